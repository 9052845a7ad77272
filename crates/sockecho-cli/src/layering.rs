//! A test that the binary's modules form layers: no file reaches, through `crate::` paths (in
//! `use` lines, grouped or multi-line, or written inline) or `mod` declarations, a file that
//! reaches back to it. Each file then reads on its own, with only what is below it in mind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["bench", "options"]`) of every source file, and the file's text.
fn sources(root: &Path) -> BTreeMap<Vec<String>, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(root.join(&dir)).expect("the source folder is readable");
        for entry in entries {
            let entry = entry.expect("the source folder is readable");
            let relative = dir.join(entry.file_name());
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                dirs.push(relative);
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            let mut module: Vec<String> = dir
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if !(stem == "mod" || (stem == "main" && dir.as_os_str().is_empty())) {
                module.push(stem.to_owned());
            }
            // This file names paths in its own text; it is a test, and nothing uses it.
            if module == ["layering"] {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("a source file is readable");
            found.insert(module, text);
        }
    }
    found
}

/// The text without `//` comments (where paths are only named, not used), in ASCII: other
/// characters, which no path contains, become spaces.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        .chars()
        .map(|c| if c.is_ascii() { c } else { ' ' })
        .collect()
}

/// Every path after `crate::`, groups expanded: `crate::{a::{b, c}, d}` gives a::b, a::c, d.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    fn tree(chars: &[char], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        skip_space(chars, at);
        if chars.get(*at) == Some(&'{') {
            *at += 1;
            loop {
                skip_space(chars, at);
                match chars.get(*at) {
                    Some('}') | None => {
                        *at += 1;
                        return;
                    }
                    Some(',') => *at += 1,
                    Some(_) => tree(chars, at, prefix, out),
                }
            }
        }
        let start = *at;
        while chars
            .get(*at)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            *at += 1;
        }
        let ident: String = chars[start..*at].iter().collect();
        let mut path = prefix.to_vec();
        if !ident.is_empty() && ident != "self" {
            path.push(ident);
        }
        if chars.get(*at) == Some(&':') && chars.get(*at + 1) == Some(&':') {
            *at += 2;
            tree(chars, at, &path, out);
        } else {
            out.push(path);
        }
    }
    fn skip_space(chars: &[char], at: &mut usize) {
        while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
            *at += 1;
        }
    }
    // `code` is ASCII, so byte offsets are char offsets.
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let mut at = from + found + "crate::".len();
        tree(&chars, &mut at, &[], &mut out);
        from = at;
    }
    out
}

/// The module that `path` lands in: its longest prefix that is a file.
fn owner<'a>(modules: &'a BTreeSet<Vec<String>>, path: &[String]) -> &'a Vec<String> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]))
        .expect("the crate root is a module")
}

#[test]
fn no_module_reaches_back_to_itself() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&root);
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut edges: BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> = BTreeMap::new();
    for (module, text) in &files {
        let code = code(text);
        let mut targets = BTreeSet::new();
        for path in crate_paths(&code) {
            targets.insert(owner(&modules, &path));
        }
        for line in code.lines() {
            let line = line.trim_start().trim_start_matches("pub ");
            if let Some(child) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
                let mut path = module.clone();
                path.push(child.trim().to_owned());
                if let Some(child) = modules.get(&path) {
                    targets.insert(child);
                }
            }
        }
        targets.remove(module);
        edges.insert(module, targets);
    }
    assert!(
        edges
            .get(&vec!["bench".to_owned()])
            .is_some_and(|t| t.len() > 3),
        "the scan found bench's imports: {edges:?}"
    );
    // Depth-first search; a module met again while on the current path closes a loop.
    fn visit<'a>(
        module: &'a Vec<String>,
        edges: &BTreeMap<&'a Vec<String>, BTreeSet<&'a Vec<String>>>,
        path: &mut Vec<&'a Vec<String>>,
        done: &mut BTreeSet<&'a Vec<String>>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(start) = path.iter().position(|m| *m == module) {
            let names: Vec<String> = path[start..]
                .iter()
                .chain([&module])
                .map(|m| format!("crate::{}", m.join("::")))
                .collect();
            panic!("modules import each other: {}", names.join(" -> "));
        }
        path.push(module);
        for next in edges.get(module).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        visit(module, &edges, &mut Vec::new(), &mut done);
    }
}

#[test]
fn grouped_and_multi_line_uses_are_read() {
    let paths = crate_paths("use crate::{\n    a::{b, self},\n    c,\n};\nlet x = crate::d::e(1);");
    let names: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(names, ["a::b", "a", "c", "d::e"]);
}
