//! The module graph drawn in `src/lib.rs`'s docs is the one the sources have, and it has
//! no cycles: every module uses only modules drawn above it.
//!
//! A module's uses are the `crate::name` (and, inside `retry`, `super::name`) paths in
//! its code, comments and test code aside (tests may use anything).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The modules a file declares (`mod name;`, `pub mod name;`).
fn declared(file: &Path) -> BTreeSet<String> {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("pub ");
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_string())
        })
        .collect()
}

/// The module a file belongs to: a top-level module, or one of `retry`'s own
/// (`retry/element` and so on); `None` for test code and files no module declares.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.iter().any(|p| p == "tests") || !declared(&src.join("lib.rs")).contains(&parts[0]) {
        return None;
    }
    if parts[0] == "retry" && parts.len() > 1 {
        if !declared(&src.join("retry.rs")).contains(&parts[1]) {
            return None;
        }
        return Some(format!("retry/{}", parts[1]));
    }
    Some(parts[0].clone())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The identifiers following `prefix` in `code`.
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            // `crate::` itself, not the end of a longer path such as `venue_images_core::`.
            code[..*i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The graph the sources have.
fn actual() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        // Test code: inline `#[cfg(test)]` modules run to the end of the file.
        let code_end = text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len());
        let code: String = text[..code_end]
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = graph.entry(module.clone()).or_default();
        let top = module.split('/').next().unwrap_or_default().to_string();
        for name in names_after(&code, "crate::") {
            if name != top {
                uses.insert(name.to_string());
            }
        }
        if module.starts_with("retry/") {
            for name in names_after(&code, "super::") {
                uses.insert(format!("retry/{name}"));
            }
            // What `retry` itself needs from outside is what its stages need.
            let outside: Vec<String> = uses
                .iter()
                .filter(|u| !u.starts_with("retry/"))
                .cloned()
                .collect();
            graph.entry("retry".into()).or_default().extend(outside);
        }
    }
    graph
}

/// The graph `src/lib.rs` draws, and its lines in order.
fn drawn() -> (Graph, Vec<String>) {
    let lib = include_str!("../src/lib.rs");
    let block = lib
        .split("//! ```text\n")
        .nth(1)
        .and_then(|b| b.split("//! ```\n").next())
        .expect("lib.rs draws the module graph in a text block");
    let mut graph = Graph::new();
    let mut order = Vec::new();
    for line in block.lines() {
        let line = line.trim_start_matches("//!");
        let Some((from, to)) = line.split_once("──▶") else {
            // The leaves: "jsonb, classify, ...   (use no other module)".
            let leaves = line.split('(').next().unwrap_or_default();
            for leaf in leaves.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                graph.insert(leaf.to_string(), BTreeSet::new());
                order.push(leaf.to_string());
            }
            continue;
        };
        let child = line.starts_with("   ");
        let from = from.trim();
        let module = if child {
            format!("retry/{from}")
        } else {
            from.to_string()
        };
        let sibling = |n: &str| {
            if child
                && Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("src/retry")
                    .join(format!("{n}.rs"))
                    .exists()
            {
                format!("retry/{n}")
            } else {
                n.to_string()
            }
        };
        let uses = to.split(',').map(str::trim).map(sibling).collect();
        graph.insert(module.clone(), uses);
        order.push(module);
    }
    (graph, order)
}

#[test]
fn the_drawn_module_graph_is_the_real_one() {
    let (drawn, _) = drawn();
    let actual = actual();
    // Leaves have no line of their own in `actual` when they use nothing: compare uses.
    let modules: BTreeSet<&String> = drawn.keys().chain(actual.keys()).collect();
    for m in modules {
        assert!(
            drawn.contains_key(m),
            "lib.rs's module graph does not draw the module {m}: add its line (or its name \
             to the first line, if it uses no other module)"
        );
        let empty = BTreeSet::new();
        assert_eq!(
            drawn.get(m).unwrap_or(&empty),
            actual.get(m).unwrap_or(&empty),
            "{m}: lib.rs's module graph draws the uses on the left, the sources have those \
             on the right"
        );
    }
}

#[test]
fn every_module_uses_only_modules_above_it() {
    let (drawn, order) = drawn();
    for (i, m) in order.iter().enumerate() {
        for used in &drawn[m] {
            assert!(
                order[..i].contains(used),
                "{m} uses {used}, which is not drawn above it: a cycle is possible"
            );
        }
    }
}
