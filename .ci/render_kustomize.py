#!/usr/bin/env python3
"""Renders a kustomization the way `kubectl kustomize` does for the subset deploy/kubernetes uses.

Supported: `resources:` (YAML files, or directories holding a kustomization) and `components:`
(directories holding a `kind: Component`). Any other field is an error rather than something
silently left out, so a kustomization that grows a transformer makes this fail until it is taught
it. Prints the objects as a YAML stream, or with --check-against FILE compares them with another
renderer's output (kubectl kustomize, where installed) and exits 1 on any difference.
"""

import argparse
import json
import pathlib
import sys

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "components"}


def load_kustomization(directory: pathlib.Path, expected_kind: str) -> dict:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        sys.exit(f"render: {directory} has no kustomization.yaml")
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind", "Kustomization") != expected_kind:
        sys.exit(f"render: {path} is a {doc.get('kind')}, expected {expected_kind}")
    unknown = set(doc) - KNOWN_FIELDS
    if unknown:
        sys.exit(f"render: {path}: fields {sorted(unknown)} are not supported by this renderer")
    return doc


def render(directory: pathlib.Path, expected_kind: str = "Kustomization") -> list:
    doc = load_kustomization(directory, expected_kind)
    objects = []
    for entry in doc.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects += render(target)
        elif target.is_file():
            objects += [o for o in yaml.safe_load_all(target.read_text()) if o]
        else:
            sys.exit(f"render: {directory}: resource {entry} does not exist")
    for entry in doc.get("components", []):
        objects += render((directory / entry).resolve(), "Component")
    seen = set()
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"), obj.get("metadata", {}).get("name"))
        if key in seen:
            sys.exit(f"render: {directory}: {key} defined twice")
        seen.add(key)
    return objects


def canonical(objects: list) -> list:
    return sorted(json.dumps(o, sort_keys=True) for o in objects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=pathlib.Path)
    parser.add_argument("--check-against", type=pathlib.Path, metavar="FILE")
    args = parser.parse_args()
    objects = render(args.directory.resolve())
    if args.check_against:
        other = [o for o in yaml.safe_load_all(args.check_against.read_text()) if o]
        if canonical(objects) != canonical(other):
            sys.exit(f"render: {args.directory} renders differently from {args.check_against}")
        print(f"render: {args.directory}: {len(objects)} objects, same as {args.check_against}")
        return
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
