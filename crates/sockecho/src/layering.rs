//! The check that a crate's files form layers: reading each file's `use` lines and the module
//! paths written out in its code (`crate::`, `super::`, `self::` and a child module's name), no
//! two files depend on each other, directly or around a loop, so every folder reads bottom-up.
//!
//! One implementation serves both crates: the library declares this file as a test module, and
//! the binary includes the same file with `#[path]`. Each runs it on its own `src/`.
//!
//! What counts as a dependency: a path that lands in another file (the longest prefix of the
//! path that is a file's module). A `mod` declaration alone is not one (declaring is not using),
//! but a `pub use child::Item` re-export is. Code under `#[cfg(test)]` modules is left out:
//! tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module, as the segments of its path from the crate root (`["server", "uring", "engine"]`).
type Module = Vec<String>;

/// Dependencies known to close a loop, each with the reason it stays. Written as
/// `("crate-name", "from::module", "to::module")`; empty when every folder is layered.
const ALLOWED: &[(&str, &str, &str)] = &[];

/// Every `.rs` file under `root`, by module path, with its text.
fn sources(root: &Path) -> BTreeMap<Module, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(root.join(&dir)).expect("the source folder is readable");
        for entry in entries {
            let entry = entry.expect("the source folder is readable");
            let relative = dir.join(entry.file_name());
            if entry.path().is_dir() {
                dirs.push(relative);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            let mut module: Module = dir
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let crate_root = dir.as_os_str().is_empty() && (stem == "lib" || stem == "main");
            if stem != "mod" && !crate_root {
                module.push(stem.to_owned());
            }
            // This file names paths as data, and nothing uses it.
            if module == ["layering"] {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("a source file is readable");
            found.insert(module, text);
        }
    }
    // Files that only tests declare (`#[cfg(test)] mod loop_tests;`) are tests too.
    let tests: Vec<Module> = found
        .iter()
        .flat_map(|(module, text)| {
            test_files(text).into_iter().map(move |name| {
                let mut child = module.clone();
                child.push(name);
                child
            })
        })
        .collect();
    for module in tests {
        found.remove(&module);
    }
    found
}

/// The code of `text`: comments, string and character literals blanked (paths there are only
/// named), and modules under `#[cfg(test)]` cut out. The result is ASCII, so a byte offset is a
/// character offset.
fn code(text: &str) -> String {
    cut_test_modules(literals_blanked(text))
}

/// `text` with comments, string and character literals blanked.
fn literals_blanked(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(chars.len());
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if c == '/' && next == Some('/') {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while at < chars.len() {
                match (chars[at], chars.get(at + 1)) {
                    ('/', Some('*')) => (depth, at) = (depth + 1, at + 2),
                    ('*', Some('/')) => (depth, at) = (depth - 1, at + 2),
                    _ => at += 1,
                }
                if depth == 0 {
                    break;
                }
            }
            out.push(' ');
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !ident_before(&chars, at) {
            // A raw string: r"..." or r#"..."#, closed by a quote and as many hashes.
            let hashes = chars[at + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(at + 1 + hashes) != Some(&'"') {
                out.push(c);
                at += 1;
                continue;
            }
            at += 2 + hashes;
            while at < chars.len()
                && !(chars[at] == '"' && chars[at + 1..].iter().take(hashes).all(|&c| c == '#'))
            {
                at += 1;
            }
            at += 1 + hashes;
            out.push_str("\"\"");
        } else if c == '"' {
            at += 1;
            while at < chars.len() && chars[at] != '"' {
                at += if chars[at] == '\\' { 2 } else { 1 };
            }
            at += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || chars.get(at + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            at += 2;
            while at < chars.len() && chars[at] != '\'' {
                at += 1;
            }
            at += 1;
            out.push_str("' '");
        } else {
            out.push(if c.is_ascii() { c } else { ' ' });
            at += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], at: usize) -> bool {
    at > 0 && is_ident(chars[at - 1])
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `code` without the modules declared under `#[cfg(test)]`: an inline `mod x { .. }` goes up to
/// its closing brace, a `mod x;` up to its semicolon.
fn cut_test_modules(code: String) -> String {
    cut_and_name_test_modules(code).0
}

/// The names of the test modules `text` declares in files of their own (`#[cfg(test)] mod x;`).
fn test_files(text: &str) -> Vec<String> {
    cut_and_name_test_modules(literals_blanked(text)).1
}

fn cut_and_name_test_modules(mut code: String) -> (String, Vec<String>) {
    const MARK: &str = "#[cfg(test)]";
    let mut files = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find(MARK) {
        let start = from + found;
        let mut at = start + MARK.len();
        // Skip further attributes, then see whether the item is a module.
        loop {
            at += code[at..].len() - code[at..].trim_start().len();
            if code[at..].starts_with("#[") {
                at += code[at..].find(']').map_or(code.len() - at, |end| end + 1);
            } else {
                break;
            }
        }
        let item = code[at..]
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if !item.starts_with("mod ") {
            from = start + MARK.len();
            continue;
        }
        let end = match (code[at..].find(';'), code[at..].find('{')) {
            (Some(semi), open) if open.is_none_or(|open| semi < open) => {
                let name = item["mod ".len()..].split(';').next().unwrap_or("");
                files.push(name.trim().to_owned());
                at + semi + 1
            }
            (_, Some(open)) => {
                let mut depth = 0;
                let mut end = code.len();
                for (i, c) in code[at + open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = at + open + i + 1;
                        break;
                    }
                }
                end
            }
            _ => code.len(),
        };
        code.replace_range(start..end, " ");
        from = start;
    }
    (code, files)
}

/// Every module path written in `code`, groups expanded (`crate::{a::{b, self}, c}` gives
/// `crate::a::b`, `crate::a` and `crate::c`). Only chains of at least two segments, or a group,
/// are paths; a bare name is not.
fn paths(code: &str) -> Vec<Vec<String>> {
    fn ident(chars: &[char], at: &mut usize) -> String {
        let start = *at;
        while chars.get(*at).is_some_and(|&c| is_ident(c)) {
            *at += 1;
        }
        chars[start..*at].iter().collect()
    }
    fn skip_space(chars: &[char], at: &mut usize) {
        while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
            *at += 1;
        }
    }
    fn colons(chars: &[char], at: &mut usize) -> bool {
        skip_space(chars, at);
        let found = chars.get(*at) == Some(&':') && chars.get(*at + 1) == Some(&':');
        if found {
            *at += 2;
            skip_space(chars, at);
        }
        found
    }
    /// One use tree after `prefix::`: a name (maybe with more segments), `*`, or a `{..}` group.
    fn tree(chars: &[char], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        match chars.get(*at) {
            Some('{') => {
                *at += 1;
                loop {
                    skip_space(chars, at);
                    match chars.get(*at) {
                        None => return,
                        Some('}') => {
                            *at += 1;
                            return;
                        }
                        Some(',') => *at += 1,
                        Some(&c) if is_ident(c) || c == '{' || c == '*' => {
                            tree(chars, at, prefix, out);
                            // `name as alias`: the alias is not a path.
                            skip_space(chars, at);
                            let mut look = *at;
                            if ident(chars, &mut look) == "as" {
                                skip_space(chars, &mut look);
                                ident(chars, &mut look);
                                *at = look;
                            }
                        }
                        // Anything else cannot be in a use group; step over it rather than stall.
                        Some(_) => *at += 1,
                    }
                }
            }
            Some('*') => {
                *at += 1;
                out.push(prefix.to_vec());
            }
            Some(&c) if is_ident(c) => {
                let name = ident(chars, at);
                let mut path = prefix.to_vec();
                if name != "self" {
                    path.push(name);
                }
                let mut look = *at;
                if colons(chars, &mut look)
                    && matches!(chars.get(look), Some(&c) if is_ident(c) || c == '{' || c == '*')
                {
                    *at = look;
                    tree(chars, at, &path, out);
                } else {
                    out.push(path);
                }
            }
            _ => out.push(prefix.to_vec()),
        }
    }
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let starts_path =
            is_ident(chars[at]) && !ident_before(&chars, at) && (at == 0 || chars[at - 1] != ':');
        if !starts_path {
            at += 1;
            continue;
        }
        let head = ident(&chars, &mut at);
        let mut look = at;
        if head.chars().next().is_some_and(|c| c.is_ascii_digit()) || !colons(&chars, &mut look) {
            continue;
        }
        if !matches!(chars.get(look), Some(&c) if is_ident(c) || c == '{' || c == '*') {
            continue;
        }
        at = look;
        tree(&chars, &mut at, &[head], &mut out);
    }
    out
}

/// The file a path written in module `from` lands in, if it is a file of this crate other than
/// `from`: the longest prefix of the absolute path that is a module.
fn target<'a>(modules: &'a BTreeSet<Module>, from: &Module, path: &[String]) -> Option<&'a Module> {
    let (mut absolute, rest): (Module, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (from.clone(), &path[1..]),
        Some("super") => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let keep = from.len().checked_sub(ups)?;
            (from[..keep].to_vec(), &path[ups..])
        }
        // `child::item`, for a module declared in this file; any other head is another crate,
        // a type or an enum.
        Some(head) => {
            let mut child = from.clone();
            child.push(head.to_owned());
            if !modules.contains(&child) {
                return None;
            }
            (from.clone(), path)
        }
        None => return None,
    };
    absolute.extend(rest.iter().cloned());
    (0..=absolute.len())
        .rev()
        .find_map(|n| modules.get(&absolute[..n]))
        .filter(|&to| to != from)
}

/// Which file depends on which, from the texts of a crate's files.
fn edges(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<Module> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, text)| {
            let targets = paths(&code(text))
                .iter()
                .filter_map(|path| target(&modules, module, path))
                .cloned()
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        format!("crate::{}", module.join("::"))
    }
}

/// The loops in `edges`: each group of modules that all reach one another (a strongly connected
/// component of more than one module), shown as one path around it.
fn loops(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<String> {
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(module) = todo.pop() {
            for next in edges.get(module).into_iter().flatten() {
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&Module, BTreeSet<&Module>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut placed = BTreeSet::new();
    let mut found = Vec::new();
    for (module, reached) in &reaches {
        if placed.contains(module) || !reached.contains(module) {
            continue;
        }
        let group: BTreeSet<&Module> = reached
            .iter()
            .filter(|other| reaches[*other].contains(module))
            .copied()
            .collect();
        placed.extend(group.iter().copied());
        // Walk from `module` back to itself inside the group, by the shortest steps.
        let mut came_from: BTreeMap<&Module, &Module> = BTreeMap::new();
        let mut frontier = vec![*module];
        'search: while !frontier.is_empty() {
            let mut next_frontier = Vec::new();
            for at in frontier {
                for next in edges[at].iter().filter(|n| group.contains(n)) {
                    if came_from.contains_key(next) {
                        continue;
                    }
                    came_from.insert(next, at);
                    if next == *module {
                        break 'search;
                    }
                    next_frontier.push(next);
                }
            }
            frontier = next_frontier;
        }
        let mut cycle = vec![*module];
        let mut at = came_from[module];
        while at != *module {
            cycle.push(at);
            at = came_from[at];
        }
        cycle.push(module);
        cycle.reverse();
        let path: Vec<String> = cycle.iter().map(|m| name(m)).collect();
        found.push(format!(
            "{} (the loop's files: {})",
            path.join(" -> "),
            group.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
        ));
    }
    found
}

#[test]
fn no_two_files_depend_on_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let crate_name = env!("CARGO_PKG_NAME");
    let files = sources(&root);
    let mut edges = edges(&files);
    let count: usize = edges.values().map(BTreeSet::len).sum();
    // A scan that reads nothing would pass; every crate here has far more links than files.
    assert!(
        count >= files.len(),
        "the scan found {count} links between {} files: {edges:#?}",
        files.len()
    );
    for (krate, from, to) in ALLOWED.iter().filter(|(k, _, _)| *k == crate_name) {
        let module = |text: &str| -> Module { text.split("::").map(str::to_owned).collect() };
        let removed = edges
            .get_mut(&module(from))
            .is_some_and(|targets| targets.remove(&module(to)));
        assert!(
            removed,
            "{krate}: the allowed link {from} -> {to} is gone; drop it from ALLOWED"
        );
    }
    let found = loops(&edges);
    assert!(
        found.is_empty(),
        "{crate_name}: files import each other:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn use_trees_and_written_paths_are_read() {
    let text = r#"
        use crate::{
            a::{b, self, c as d},
            e::*,
        };
        use super::f::G;
        pub use child::H;
        let x = crate::i::j(1); // crate::in_comment
        let s = "crate::in_string";
        let v = Vec::<u8>::new();
        #[cfg(test)]
        mod tests {
            use crate::in_test;
        }
    "#;
    let names: Vec<String> = paths(&code(text)).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        names,
        [
            "crate::a::b",
            "crate::a",
            "crate::a::c",
            "crate::e",
            "super::f::G",
            "child::H",
            "crate::i::j",
        ]
    );
    let declares =
        "mod a;\n#[cfg(test)]\n#[path = \"t.rs\"]\nmod loop_tests;\n#[cfg(test)]\nmod tests {}";
    assert_eq!(test_files(declares), ["loop_tests"]);
}

#[test]
fn a_loop_is_found_and_named() {
    let files: BTreeMap<Module, String> = [
        (vec![], "mod a; mod b; mod c;"),
        (vec!["a".into()], "use crate::b::X;"),
        (vec!["b".into()], "pub struct X; use super::c::Y;"),
        (vec!["c".into()], "pub struct Y; fn f() { crate::a::g() }"),
    ]
    .into_iter()
    .map(|(m, t)| (m, t.to_owned()))
    .collect();
    let found = loops(&edges(&files));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("crate::a -> crate::b -> crate::c -> crate::a"),
        "{found:?}"
    );
}
