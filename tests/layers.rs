//! The stages are layers, and an import points down only:
//!
//! ```text
//! ir                                   imports no other stage (the error type is ir::error)
//! error                                ir (the crate root's re-export of ir::error)
//! front, egraph, transform, runtime    ir, error (transform also egraph: its simplifier)
//! measure, export, pictures, train,    any stage of the rows above
//! structure
//! lib.rs, src/bin                      anything
//! ```
//!
//! This test reads every file under `src/` (but `src/bin`, a crate of its
//! own that sees only the library's public API, and `src/lib.rs`, the root)
//! and fails on each reference from a stage to one it may not import,
//! naming the file, the line and the edge. A reference is any path through
//! the crate in code (comments and string literals are skipped):
//! `crate::runtime::...`, a group `crate::{ir::Op, runtime::Tensor}`, a name
//! the root re-exports (`crate::Interpreter` is the runtime's), or
//! `super::` climbing out of the stage's folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each stage and the stages it may import (itself aside).
const LAYERS: &[(&str, &[&str])] = &[
    ("ir", &[]),
    ("error", &["ir"]),
    ("front", &["ir", "error"]),
    ("egraph", &["ir", "error"]),
    ("transform", &["ir", "error", "egraph"]),
    ("runtime", &["ir", "error"]),
    ("measure", &["ir", "error", "front", "egraph", "transform", "runtime"]),
    ("export", &["ir", "error", "front", "egraph", "transform", "runtime"]),
    ("pictures", &["ir", "error", "front", "egraph", "transform", "runtime"]),
    ("train", &["ir", "error", "front", "egraph", "transform", "runtime"]),
    ("structure", &["ir", "error", "front", "egraph", "transform", "runtime"]),
];

fn allowed(stage: &str) -> Option<&'static [&'static str]> {
    LAYERS.iter().find(|(s, _)| *s == stage).map(|(_, a)| *a)
}

/// `text` with comments and the contents of string and character literals
/// blanked (newlines kept, so that lines keep their numbers).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r' && (next == Some('"') || next == Some('#')) && !ident_char(c.get(i.wrapping_sub(1))) {
            // A raw string: r"...", r#"..."#.
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            out.push(' ');
            i += 2 + hashes;
            while i < c.len() && !c[i..].starts_with(&close) {
                out.push(blank(c[i]));
                i += 1;
            }
            i += close.len();
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime ('a).
            let end = if next == Some('\\') {
                c[i + 2..].iter().position(|&q| q == '\'').map(|p| i + 2 + p)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.extend(std::iter::repeat_n(' ', end + 1 - i));
                    i = end + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
}

/// The identifier starting at `i`, if any.
fn ident_at(c: &[char], i: usize) -> String {
    c[i..]
        .iter()
        .take_while(|ch| ch.is_alphanumeric() || **ch == '_')
        .collect()
}

/// Every place `code` names a top-level item of the crate: (1-based line,
/// the item's name just below `crate`). `module` is the file's module path
/// (`["ir", "unary"]`), against which `super::` resolves.
fn crate_references(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let c: Vec<char> = code.chars().collect();
    let mut found = vec![];
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\n' {
            line += 1;
        }
        let starts_word = !ident_char(i.checked_sub(1).and_then(|p| c.get(p)));
        if !starts_word {
            i += 1;
            continue;
        }
        let word = ident_at(&c, i);
        // Where the path goes on below the crate root (at its `::`), if this word starts one that reaches it.
        let below_root = match word.as_str() {
            "crate" => Some(i + word.len()),
            "super" => {
                // super::super::...: climb one module per `super`.
                let mut j = i;
                let mut climbs = 0;
                while ident_at(&c, j) == "super" && c[j + 5..].starts_with(&[':', ':']) {
                    climbs += 1;
                    j += 7;
                }
                (climbs >= module.len()).then_some(j.saturating_sub(2))
            }
            _ => None,
        };
        let Some(after) = below_root else {
            i += word.len().max(1);
            continue;
        };
        if !c[after..].starts_with(&[':', ':']) {
            i += word.len().max(1);
            continue;
        }
        let j = after + 2;
        if c.get(j) == Some(&'{') {
            // crate::{a::b, c}: the first segment of each item of the group.
            let mut depth = 0;
            let mut k = j;
            let mut item_start = true;
            let mut group_line = line;
            while k < c.len() {
                match c[k] {
                    '{' => {
                        depth += 1;
                        item_start = depth == 1;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    '\n' => group_line += 1,
                    ch if item_start && (ch.is_alphabetic() || ch == '_') => {
                        let name = ident_at(&c, k);
                        found.push((group_line, name.clone()));
                        item_start = false;
                        k += name.len();
                        continue;
                    }
                    _ => {}
                }
                k += 1;
            }
        } else {
            let name = ident_at(&c, j);
            if !name.is_empty() {
                found.push((line, name));
            }
        }
        i += word.len().max(1);
    }
    found
}

/// The stage of each name the root (`src/lib.rs`) re-exports: `pub use runtime::{Interpreter, ...}`.
fn root_names(lib: &str) -> BTreeMap<String, String> {
    let code = code_only(lib);
    let mut names = BTreeMap::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(at) = statement.find("pub use ") else {
            continue;
        };
        let path = &statement[at + "pub use ".len()..];
        let Some((stage, rest)) = path.split_once("::") else {
            continue;
        };
        let rest = rest.trim().trim_start_matches('{').trim_end_matches('}');
        for item in rest.split(',') {
            let item = item.trim();
            // `a as b` exports b.
            let name = item
                .rsplit(" as ")
                .next()
                .unwrap_or(item)
                .rsplit("::")
                .next()
                .unwrap_or("")
                .trim();
            if !name.is_empty() {
                names.insert(name.to_string(), stage.trim().to_string());
            }
        }
    }
    names
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path under `src/`: `ir/unary.rs` is `["ir", "unary"]`, `ir/mod.rs` is `["ir"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The forbidden references in one file: (line, the edge, what the line says).
fn violations(
    module: &[String],
    text: &str,
    roots: &BTreeMap<String, String>,
) -> Result<Vec<(usize, String, String)>, String> {
    let stage = &module[0];
    let allowed = allowed(stage).ok_or_else(|| {
        format!("stage `{stage}` is not in tests/layers.rs's LAYERS: add it, with the stages it may import")
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![];
    for (line, name) in crate_references(&code_only(text), module) {
        let target = if is_stage(&name) {
            name.clone()
        } else if let Some(stage) = roots.get(&name) {
            stage.clone()
        } else {
            return Err(format!(
                "line {line}: `crate::{name}` is neither a stage nor a name src/lib.rs re-exports"
            ));
        };
        if target != *stage && !allowed.contains(&target.as_str()) {
            let said = lines.get(line - 1).map_or("", |l| l.trim()).to_string();
            let may = if allowed.is_empty() {
                "no other stage".to_string()
            } else {
                allowed.join(", ")
            };
            out.push((line, format!("{stage} -> {target} ({stage} may import {may})"), said));
        }
    }
    Ok(out)
}

/// Whether `name` is a stage (a module of the root).
fn is_stage(name: &str) -> bool {
    LAYERS.iter().any(|(s, _)| *s == name)
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let roots = root_names(&lib);
    assert!(
        roots.get("Interpreter").map(String::as_str) == Some("runtime"),
        "could not read src/lib.rs's re-exports: {roots:?}"
    );
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut problems = vec![];
    let mut stages_seen = BTreeSet::new();
    for path in &files {
        let relative = path.strip_prefix(&src).expect("under src");
        let module = module_path(relative);
        if module.is_empty() || module == ["lib"] || module[0] == "bin" {
            continue;
        }
        stages_seen.insert(module[0].clone());
        let text = std::fs::read_to_string(path).expect("readable");
        match violations(&module, &text, &roots) {
            Ok(found) => problems.extend(
                found
                    .into_iter()
                    .map(|(line, edge, said)| format!("src/{}:{line}: {edge}: {said}", relative.display())),
            ),
            Err(e) => problems.push(format!("src/{}: {e}", relative.display())),
        }
    }
    assert!(
        problems.is_empty(),
        "imports that point up (or sideways) the layers:\n{}",
        problems.join("\n")
    );
    for (stage, _) in LAYERS {
        assert!(
            stages_seen.contains(*stage),
            "LAYERS names `{stage}`, which has no file under src/"
        );
    }
}

/// The checker itself: each way of naming another stage is caught, and
/// comments, strings and a stage's own paths are not.
#[test]
fn the_checker_catches_every_form_of_reference() {
    let roots: BTreeMap<String, String> = [("Interpreter", "runtime"), ("Program", "ir"), ("Error", "error")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let module = |m: &str| m.split('/').map(String::from).collect::<Vec<_>>();
    let edges = |m: &str, text: &str| -> Vec<(usize, String)> {
        violations(&module(m), text, &roots)
            .unwrap()
            .into_iter()
            .map(|(line, edge, _)| (line, edge.split(' ').take(3).collect::<Vec<_>>().join(" ")))
            .collect()
    };
    let text = "use crate::ir::Op;\n\
                use crate::runtime::vmath::VMath;\n\
                use crate::{\n    ir::Shape,\n    egraph::Graph,\n};\n\
                fn f() -> crate::Interpreter { todo!() }\n\
                fn g(_: crate::Program, _: crate::error::Error) {}\n\
                use super::super::transform::grad;\n\
                // use crate::runtime::Tensor;\n\
                /* crate::front::parse_program */\n\
                const S: &str = \"crate::export::to_onnx\";\n\
                const R: &str = r#\"crate::pictures::to_svg\"#;\n\
                const C: char = '\"'; use crate::measure::calibrate;\n";
    assert_eq!(
        edges("ir/unary", text),
        vec![
            (2, "ir -> runtime".to_string()),
            (5, "ir -> egraph".to_string()),
            (7, "ir -> runtime".to_string()),
            (8, "ir -> error".to_string()),
            (9, "ir -> transform".to_string()),
            (14, "ir -> measure".to_string()),
        ]
    );
    // The same text from the top layer: everything it names is below it.
    assert_eq!(edges("measure/x", text), vec![]);
    // A stage's own paths, and super:: within its folder, are fine.
    assert_eq!(edges("egraph/a", "use crate::egraph::b;\nuse super::c;\n"), vec![]);
    // A name the root does not re-export is reported, not passed.
    assert!(violations(&module("ir/x"), "use crate::Nothing;\n", &roots).is_err());
    // A stage the table does not know is reported.
    assert!(violations(&module("newstage/x"), "\n", &roots).is_err());
}
