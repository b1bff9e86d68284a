//! The compiler's module structure, checked: no import cycle among its top-level modules, and
//! the op catalogue (`ops`) built on nothing but diagnostics — no syntax, no lowering, no
//! shape pass — so that the front end calls into the ops and never the other way.
//!
//! A module's dependencies are the `crate::<module>` paths its files name (`use` lines,
//! paths in code, `crate::{a, b}` groups); the crate root (`lib.rs`) is the driver and is left
//! out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The lowercase identifiers right after `crate::`, and inside `crate::{…}` groups.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect() };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Every top-level module of `nnlang/src` with the other top-level modules it names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("nnlang/src") {
        let path = entry.expect("directory entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path.clone());
        } else {
            continue;
        }
        let mut deps = BTreeSet::new();
        for f in files {
            deps.extend(crate_paths(&std::fs::read_to_string(&f).expect("readable source")));
        }
        modules.insert(name, deps);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    for (name, deps) in modules.iter_mut() {
        deps.retain(|d| d != name && names.contains(d));
    }
    modules
}

/// A cycle through `start`, if there is one, as the modules along it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_scanner_sees_paths_and_groups() {
    let text = "use crate::diag::Span;\nuse crate::{compile, ir};\nlet x = crate::shape::MAX;";
    let found: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(found, ["compile", "diag", "ir", "shape"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle_from(&g, "a"), Some(vec!["a".to_string(), "b".to_string()]));
}

#[test]
fn no_import_cycle_among_the_compilers_modules() {
    let graph = module_graph();
    assert!(graph.len() >= 10, "expected the compiler's modules, found {:?}", graph.keys());
    for name in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, name) {
            panic!("import cycle: {} -> {name}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_op_catalogue_stands_on_diagnostics_alone() {
    let graph = module_graph();
    let ops: Vec<&String> = graph["ops"].iter().collect();
    assert_eq!(ops, ["diag"], "ops/ must not depend on the front end or the passes");
    let syntax: Vec<&String> = graph["syntax"].iter().collect();
    assert_eq!(syntax, ["diag"]);
    assert!(graph["diag"].is_empty(), "diag depends on {:?}", graph["diag"]);
}
