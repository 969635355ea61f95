//! The import graph of a crate, read from its sources: `crate::` and `super::` paths (also
//! inside `use` groups), unit-test modules and comments left out. For tests that keep a crate
//! layered and free of import cycles.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    path::{Path, PathBuf},
};

/// Module (path segments) -> the modules it imports.
pub type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// Module path (`["dataplane", "loader"]`) -> source file, for every module under `src/`.
pub fn modules(src: &Path) -> io::Result<BTreeMap<Vec<String>, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let Ok(relative) = path.strip_prefix(src) else {
                continue;
            };
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            if parts.first().is_some_and(|p| p == "bin" || p == "main") {
                continue;
            }
            found.insert(parts, path);
        }
    }
    Ok(found)
}

/// The source without its `#[cfg(test)]` modules (written last in a file, or in files of
/// their own) and without comments.
fn production_source(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the source names from `crate::` or `super::`, expanded from `use` groups.
pub fn referenced_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let boundary = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if boundary && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let (base, start) = if rest.starts_with("crate::") {
                (Vec::new(), i + 7)
            } else {
                let mut base = module.to_vec();
                let mut at = i;
                while bytes[at..]
                    .iter()
                    .collect::<String>()
                    .starts_with("super::")
                {
                    base.pop();
                    at += 7;
                }
                (base, at)
            };
            let (paths, end) = parse_tree(&bytes, start);
            for path in paths {
                let mut full = base.clone();
                full.extend(path);
                out.push(full);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Parses a path tree (`a::b::{c, d::e}`) at `at`; returns its paths and where it ends.
fn parse_tree(text: &[char], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        if text.get(at) == Some(&'{') {
            let mut paths = Vec::new();
            at += 1;
            loop {
                while text.get(at).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    at += 1;
                }
                if text.get(at).is_none_or(|c| *c == '}') {
                    return (paths, at + 1);
                }
                let (inner, end) = parse_tree(text, at);
                for path in inner {
                    let mut full = prefix.clone();
                    full.extend(path);
                    paths.push(full);
                }
                at = end;
                // Skip `as alias` and anything else up to the next item.
                while text.get(at).is_some_and(|c| *c != ',' && *c != '}') {
                    at += 1;
                }
            }
        }
        let start = at;
        while text
            .get(at)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            at += 1;
        }
        if at == start {
            return (vec![prefix], at);
        }
        prefix.push(text[start..at].iter().collect());
        if text[at..].iter().take(2).collect::<String>() == "::" {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

/// The longest prefix of `path` that is a module of the crate.
fn module_of(path: &[String], known: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains_key(prefix))
}

/// Module-to-module imports of the crate whose sources are in `src`, with module paths cut to
/// their first `depth` segments (`depth` 2: `dataplane::loader`).
pub fn import_graph(src: &Path, depth: usize) -> io::Result<Graph> {
    let known = modules(src)?;
    let mut graph = Graph::new();
    for (module, file) in &known {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with("tests.rs") || module.iter().any(|m| m == "tests") {
            continue;
        }
        let text = production_source(&fs::read_to_string(file)?);
        let own: Vec<String> = module.iter().take(depth).cloned().collect();
        for path in referenced_paths(&text, module) {
            let Some(target) = module_of(&path, &known) else {
                continue;
            };
            let target: Vec<String> = target.into_iter().take(depth).collect();
            if target != own && !target.is_empty() && !own.starts_with(&target) {
                graph.entry(own.clone()).or_default().insert(target);
            }
        }
    }
    Ok(graph)
}

/// Every cycle a depth-first search closes, as `a -> b -> a`.
pub fn cycles(graph: &Graph) -> Vec<String> {
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let cycle: Vec<String> = path[at..]
                .iter()
                .chain([node])
                .map(|n| n.join("::"))
                .collect();
            cycles.push(cycle.join(" -> "));
            return;
        }
        if !done.insert(node.clone()) {
            return;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_sees_grouped_and_relative_imports() {
        let module = vec![
            "dataplane".to_string(),
            "policy".to_string(),
            "engine".to_string(),
        ];
        let text = "use crate::{calc::policy::{calc::GroupKey, program::Program}, model};\nuse super::state::X;";
        let paths = referenced_paths(text, &module);
        let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
        assert_eq!(
            joined,
            [
                "calc::policy::calc::GroupKey",
                "calc::policy::program::Program",
                "model",
                "dataplane::policy::state::X",
            ]
        );
    }
}
