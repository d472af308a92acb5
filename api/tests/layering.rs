//! The api's import rule: nothing under `service/`, `domain/` or `store/` names axum,
//! `crate::http` or `crate::startup`, not even in a comment. The HTTP layer depends on the
//! service, never the other way round.

#![allow(clippy::unwrap_used)] // a test binary: a panic is how it fails

use std::path::{Path, PathBuf};

const FORBIDDEN: [&str; 3] = ["axum", "crate::http", "crate::startup"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_below_http_names_axum_http_or_startup() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for layer in ["service", "domain", "store"] {
        sources(&src.join(layer), &mut files);
    }
    assert!(files.len() >= 10, "expected the layers' sources, found {files:?}");
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for word in FORBIDDEN {
                if line.contains(word) {
                    offences.push(format!("{}:{}: {word}: {line}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(offences.is_empty(), "the import rule is broken:\n{}", offences.join("\n"));
}

#[test]
fn the_rule_notices_an_offending_line() {
    // The check above must be able to fail: a line naming axum is caught.
    assert!(FORBIDDEN.iter().any(|w| "use axum::Json;".contains(w)));
    assert!(FORBIDDEN.iter().any(|w| "// see crate::http::error".contains(w)));
}
