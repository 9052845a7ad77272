//! A check that the library's files form layers: reading each file's `use` statements (and
//! the module paths written out in its code), no two files depend on each other, directly or
//! around a loop. Tests inside a file (`mod tests`) are left out. The crate root (`lib.rs`) only
//! declares modules and re-exports names; a path through one of its re-exports
//! (`crate::Endpoint`) counts as a use of the file the name comes from. Likewise a folder's
//! `mod.rs` re-exporting its files' names (`pub use parse::parse;`) is the folder's public face,
//! not a use: a file of the folder may take shared types from its `mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`server::uring::engine`) → file text, for every file of `src/` but `lib.rs`.
fn library_files() -> BTreeMap<String, String> {
    fn walk(dir: &Path, module: &str, into: &mut BTreeMap<String, String>) {
        let entries = std::fs::read_dir(dir).expect("src/ is readable");
        for entry in entries {
            let path = entry.expect("src/ is readable").path();
            let name = path
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                walk(&path, &join(module, name), into);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !(module.is_empty() && name == "lib")
            {
                let module = if name == "mod" {
                    module.to_owned()
                } else {
                    join(module, name)
                };
                let text = std::fs::read_to_string(&path).expect("a source file is readable");
                into.insert(module, text);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(&src(), "", &mut files);
    files
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn join(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}::{name}")
    }
}

/// Per folder (`server`; `""` for the crate root): the names its `mod.rs` (or `lib.rs`)
/// re-exports, each with the absolute path of what it re-exports.
type Reexports = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn reexports(files: &BTreeMap<String, String>) -> Reexports {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs is readable");
    let folders = files
        .iter()
        .filter(|(m, _)| is_folder(m, files))
        .map(|(m, text)| (m.as_str(), text.as_str()));
    let mut all = Reexports::new();
    for (folder, text) in std::iter::once(("", lib.as_str())).chain(folders) {
        let (statements, _) = split_reexports(text);
        let mut paths = Vec::new();
        for statement in statements {
            expand(&statement, &[], &mut paths);
        }
        let names = all.entry(folder.to_owned()).or_default();
        for path in paths {
            if let (Some(name), Some(absolute)) = (path.last(), absolute_path(folder, &path, files))
            {
                names.insert(name.clone(), absolute);
            }
        }
    }
    all
}

/// Whether `module` is a folder's `mod.rs`.
fn is_folder(module: &str, files: &BTreeMap<String, String>) -> bool {
    let inside = format!("{module}::");
    files.keys().any(|m| m.starts_with(&inside))
}

/// Every path a `use` tree names, as segments: `a::{b, c::d}` gives `a::b` and `a::c::d`.
fn expand(tree: &str, prefix: &[String], into: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut path = prefix.to_vec();
        path.extend(segments(&tree[..open]));
        let inner = &tree[open + 1..tree.rfind('}').expect("a `use` group closes")];
        // Split the group at its top-level commas.
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &path, into);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &path, into);
    } else if !tree.is_empty() {
        let mut path = prefix.to_vec();
        let name = tree.split(" as ").next().unwrap_or(tree);
        path.extend(segments(name).filter(|s| s != "self"));
        into.push(path);
    }
}

fn segments(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The paths file `text` refers to: its `use` statements, and the paths written out in its
/// code (`super::x::f()`, `bind::Socket`).
fn referenced_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut statement: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("mod tests") {
            break;
        }
        let code = line.split("//").next().unwrap_or_default().trim();
        if let Some(open) = statement.as_mut() {
            open.push_str(code);
        } else if let Some(at) = code.find("use ").filter(|&at| {
            let before = &code[..at];
            before.is_empty() || before.starts_with("pub")
        }) {
            statement = Some(code[at + 4..].to_owned());
        } else {
            paths.extend(code_paths(code));
        }
        if let Some(done) = statement.take_if(|s| s.ends_with(';')) {
            expand(done.trim_end_matches(';'), &[], &mut paths);
        }
    }
    paths
}

/// `text`'s re-exports (`pub use` and `pub(crate) use` statements, without `pub use` and `;`),
/// and the rest of it.
fn split_reexports(text: &str) -> (Vec<String>, String) {
    let mut statements: Vec<String> = Vec::new();
    let mut kept = String::with_capacity(text.len());
    let mut in_reexport = false;
    for line in text.lines() {
        let code = line.trim_start();
        if !in_reexport
            && code.starts_with("pub")
            && code
                .split_once(" use ")
                .is_some_and(|(visibility, _)| !visibility.contains(' '))
        {
            in_reexport = true;
            let tree = code.split_once(" use ").map_or("", |(_, tree)| tree);
            statements.push(String::new());
            statements.last_mut().expect("just pushed").push_str(tree);
        } else if in_reexport {
            statements.last_mut().expect("inside one").push_str(code);
        }
        if in_reexport {
            in_reexport = !code.trim_end().ends_with(';');
            if !in_reexport {
                let done = statements.last_mut().expect("inside one");
                *done = done.trim_end().trim_end_matches(';').to_owned();
            }
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    (statements, kept)
}

/// The `a::b::c` chains in a line of code.
fn code_paths(code: &str) -> Vec<Vec<String>> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut paths = Vec::new();
    let mut previous = ' ';
    let mut rest = code;
    while let Some(c) = rest.chars().next() {
        if is_ident(c) && !is_ident(previous) && previous != ':' {
            let chain: String = rest
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            if chain.contains("::") {
                paths.push(segments(&chain).collect());
            }
            previous = chain.chars().last().unwrap_or(c);
            rest = &rest[chain.len()..];
        } else {
            previous = c;
            rest = &rest[c.len_utf8()..];
        }
    }
    paths
}

/// The absolute module path `path` names from the file of module `from`; `None` for a path
/// into another crate.
fn absolute_path(
    from: &str,
    path: &[String],
    files: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    let mut absolute: Vec<String> = segments(from).collect();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            absolute.clear();
            rest = &path[1..];
        }
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                absolute.pop();
                rest = &rest[1..];
            }
        }
        Some("self") => rest = &path[1..],
        // A path from a module declared in this file (`use stream::x`) or an outside crate.
        Some(first) if files.contains_key(&join(from, first)) => {}
        _ => return None,
    }
    absolute.extend(rest.iter().cloned());
    Some(absolute)
}

/// The library file an absolute path leads into: the longest prefix that is a file, followed
/// through the re-exports of folders (`crate::connect::Peer` is in `connect::peer`).
fn file_of(
    mut absolute: Vec<String>,
    files: &BTreeMap<String, String>,
    reexports: &Reexports,
) -> Option<String> {
    // Re-exports of re-exports are followed a few levels deep.
    for _ in 0..8 {
        let (n, module) = (0..=absolute.len())
            .rev()
            .map(|n| (n, absolute[..n].join("::")))
            .find(|(n, module)| *n == 0 || files.contains_key(module))?;
        let next = absolute
            .get(n)
            .and_then(|name| reexports.get(&module)?.get(name));
        match next {
            Some(reexported) => {
                let mut followed = reexported.clone();
                followed.extend(absolute[n + 1..].iter().cloned());
                absolute = followed;
            }
            None if n == 0 => return None,
            None => return Some(module),
        }
    }
    None
}

#[test]
fn no_two_library_files_depend_on_each_other() {
    let files = library_files();
    let reexports = reexports(&files);
    assert!(files.contains_key("server::stream") && files.contains_key("server::uring::engine"));
    assert!(files.contains_key("sys::uring") && files.contains_key("bench::worker"));
    assert_eq!(reexports[""]["Endpoint"], ["endpoint", "Endpoint"]);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // This check's own text names paths only as data.
    for (module, text) in files.iter().filter(|(m, _)| *m != "layering") {
        let targets = edges.entry(module.clone()).or_default();
        // A folder's re-exports are its public face, not a use (see the top of this file).
        let (_, text) = split_reexports(text);
        for path in referenced_paths(&text) {
            if let Some(to) =
                absolute_path(module, &path, &files).and_then(|p| file_of(p, &files, &reexports))
                && &to != module
            {
                targets.insert(to);
            }
        }
    }
    assert!(
        edges["server::stream"].contains("server::uring::handle")
            && edges["server::datagram"].contains("endpoint")
            && edges["bench::worker"].contains("connect::peer"),
        "the scan sees imports: {edges:#?}"
    );
    // Depth-first search for a loop, reporting the first found.
    fn visit(
        module: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = stack.iter().position(|m| m == module) {
            panic!(
                "library files import each other: {} -> {module}",
                stack[at..].join(" -> ")
            );
        }
        if done.contains(module) {
            return;
        }
        stack.push(module.to_owned());
        for next in edges.get(module).into_iter().flatten() {
            visit(next, edges, stack, done);
        }
        stack.pop();
        done.insert(module.to_owned());
    }
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        visit(module, &edges, &mut Vec::new(), &mut done);
    }
}
