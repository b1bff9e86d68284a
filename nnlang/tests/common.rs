//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `.nn` files of a folder, sorted, as (stem, path relative to `base`, source).
pub fn nn_files(dir: &Path, base: &Path) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = std::fs::read_dir(dir)
        .expect("test folder exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nn"))
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let rel = p.strip_prefix(base).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            let src = std::fs::read_to_string(&p).expect("readable test file");
            (stem, rel, src)
        })
        .collect();
    out.sort();
    out
}

/// The AST's debug text without its spans: what the program says, not where.
pub fn meaning(src: &str) -> String {
    let file = nnlang::syntax::parse(src).expect("parses");
    let text = format!("{file:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("Span { start: ") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(" }").map_or(rest.len(), |k| k + 2);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
