//! No import cycles between the top-level modules of the extension and of the uploader
//! (the core crate's graph has its own, finer test: extension/core/tests/module_graph.rs),
//! and each crate's `lib.rs` draws the graph the sources have. A module's imports are the
//! `crate::name` paths in its files, comments and test code aside.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn files_of(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        out.push(single);
    }
    let mut stack = vec![src.join(module)];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().is_none_or(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    out
}

fn graph(crate_dir: &str) -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("pub ");
            Some(l.strip_prefix("mod ")?.strip_suffix(';')?.to_string())
        })
        .filter(|m| m != "sql_tests")
        .collect();
    let mut g = Graph::new();
    for m in &modules {
        let uses = g.entry(m.clone()).or_default();
        for f in files_of(&src, m) {
            let text = fs::read_to_string(&f).unwrap_or_default();
            let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    if line[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    {
                        continue;
                    }
                    let rest = &line[i + 7..];
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    let name = &rest[..end];
                    if name != m && modules.contains(name) {
                        uses.insert(name.to_string());
                    }
                }
            }
        }
    }
    g
}

/// A cycle of `g`, if there is one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for u in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, u, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

/// The graph drawn in `lib.rs`'s "Module graph" text block (`a → b c`; a line of names
/// with "(import nothing)" lists the modules that import nothing).
fn drawn(crate_dir: &str) -> Graph {
    let lib = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(crate_dir)
            .join("src/lib.rs"),
    )
    .expect("lib.rs");
    let block = lib
        .split("//! ```text\n")
        .nth(1)
        .and_then(|b| b.split("//! ```\n").next())
        .expect("lib.rs draws its module graph in a text block");
    let mut g = Graph::new();
    let mut last: Option<String> = None;
    for line in block.lines().map(|l| l.trim_start_matches("//!").trim()) {
        if let Some((from, to)) = line.split_once('→') {
            let from = from.trim().to_string();
            g.entry(from.clone())
                .or_default()
                .extend(to.split_whitespace().map(str::to_string));
            last = Some(from);
        } else if line.contains("(import nothing)") {
            for m in line.split('(').next().unwrap_or("").split_whitespace() {
                g.entry(m.to_string()).or_default();
            }
            last = None;
        } else if let Some(m) = &last {
            // A continuation line of the previous module's list.
            g.entry(m.clone())
                .or_default()
                .extend(line.split_whitespace().map(str::to_string));
        }
    }
    g
}

/// The crate in `dir` has more than ten modules, no import cycle, and its `lib.rs` draws
/// exactly its graph.
fn acyclic_and_drawn(dir: &str) {
    let g = graph(dir);
    assert!(g.len() > 10, "{g:?}");
    assert_eq!(cycle(&g), None, "an import cycle in {dir}: {g:#?}");
    assert_eq!(drawn(dir), g, "{dir}/src/lib.rs draws another graph");
}

#[test]
fn the_extension_has_no_import_cycle_and_draws_its_graph() {
    acyclic_and_drawn("extension");
}

#[test]
fn the_uploader_has_no_import_cycle_and_draws_its_graph() {
    acyclic_and_drawn("uploader");
}
