//! The modules' imports form no circle: at the top (`crate::jobs` never
//! reaches back to `crate::metrics` if metrics reaches jobs), and among the
//! files and folders of each module (`plugins/engine.rs` and
//! `plugins/run.rs` do not import each other). A circle means neither side
//! can be read, tested or moved alone; docs/architecture.md draws the
//! layers this test keeps.
//!
//! Imports are read as text: `crate::a::b` and `super::b` paths in each
//! file. A folder's `mod.rs` is its front door: it declares the files
//! beside it, so it is left out of the graph among them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// One source file: its module path and the module paths it names.
struct Source {
    module: Vec<String>,
    imports: Vec<Vec<String>>,
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading host/src") {
        let path = entry.expect("a dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Path segments after each `prefix` in `text`, e.g. `crate::a::b` → `[a, b]`.
fn paths_after<'t>(text: &'t str, prefix: &str) -> Vec<Vec<&'t str>> {
    text.match_indices(prefix)
        .filter(|(i, _)| {
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        })
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .split("::")
                .map(|s| {
                    let end = s
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(s.len());
                    &s[..end]
                })
                .take_while(|s| !s.is_empty())
                .collect()
        })
        .collect()
}

/// The module path of a file: `plugins/engine.rs` → `[plugins, engine]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every file's imports as absolute module paths.
fn imports() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let rel = file.strip_prefix(&root).expect("beneath src").to_path_buf();
            if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
                return None;
            }
            let text = std::fs::read_to_string(&file).expect("reading a source");
            let me = module_of(&rel);
            let mut targets: Vec<Vec<String>> = paths_after(&text, "crate::")
                .into_iter()
                .map(|p| p.into_iter().map(str::to_string).collect())
                .collect();
            // `super` is the parent of the file's module.
            let parent = &me[..me.len().saturating_sub(1)];
            for p in paths_after(&text, "super::") {
                let mut base = parent.to_vec();
                let mut rest = p.as_slice();
                while let Some((&"super", tail)) = rest.split_first() {
                    base.pop();
                    rest = tail;
                }
                base.extend(rest.iter().map(|s| s.to_string()));
                targets.push(base);
            }
            Some(Source {
                module: me,
                imports: targets,
            })
        })
        .collect()
}

/// The first circle found in `graph`, if any, as the nodes in order.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// The graph among the children of module `within` (the crate at `[]`):
/// an import from one child's subtree into another's is an arrow.
fn level(within: &[String], all: &[Source]) -> Graph {
    let mut graph = Graph::new();
    let children: BTreeSet<&String> = all
        .iter()
        .map(|s| &s.module)
        .filter(|me| me.len() > within.len() && me.starts_with(within))
        .map(|me| &me[within.len()])
        .collect();
    for Source {
        module: me,
        imports: targets,
    } in all
    {
        if me.len() <= within.len() || !me.starts_with(within) {
            continue;
        }
        let from = &me[within.len()];
        for target in targets {
            if target.len() > within.len()
                && target.starts_with(within)
                && children.contains(&target[within.len()])
                && &target[within.len()] != from
            {
                graph
                    .entry(from.clone())
                    .or_default()
                    .insert(target[within.len()].clone());
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let all = imports();
    // Every module with modules inside: the crate, and each folder.
    let mut modules: BTreeSet<Vec<String>> = BTreeSet::new();
    for source in &all {
        for depth in 0..source.module.len() {
            modules.insert(source.module[..depth].to_vec());
        }
    }
    assert!(modules.len() > 10, "found the module folders: {modules:?}");
    for within in &modules {
        let graph = level(within, &all);
        if let Some(found) = circle(&graph) {
            panic!(
                "an import circle in `crate::{}`: {}",
                within.join("::"),
                found.join(" -> ")
            );
        }
    }
}

#[test]
fn a_circle_is_found() {
    let files = |list: &[(&str, &[&str])]| -> Vec<Source> {
        list.iter()
            .map(|(file, uses)| {
                let text: String = uses.iter().map(|u| format!("use {u};\n")).collect();
                Source {
                    module: module_of(Path::new(file)),
                    imports: paths_after(&text, "crate::")
                        .into_iter()
                        .map(|p| p.into_iter().map(str::to_string).collect())
                        .collect(),
                }
            })
            .collect()
    };
    let circular = files(&[
        ("jobs/mod.rs", &["crate::metrics::Metrics"]),
        ("metrics.rs", &["crate::jobs::Job"]),
    ]);
    let found = circle(&level(&[], &circular)).expect("a circle");
    assert_eq!(found.first(), found.last());
    assert!(found.contains(&"jobs".to_string()) && found.contains(&"metrics".to_string()));
    let layered = files(&[
        ("jobs/mod.rs", &["crate::metrics::Metrics"]),
        ("metrics.rs", &["crate::config::Config"]),
    ]);
    assert_eq!(circle(&level(&[], &layered)), None);
}
