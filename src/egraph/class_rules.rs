//! Rule classes, as JAX has them: one batching rule per op of the elementwise
//! tables, generated from the table, so that a new elementwise op batches
//! (and is soundness-checked) the moment it exists. They are written as text
//! rules and parsed like `rules/*.rules`, so `batchgraph rules` lists them and
//! the soundness checker runs them like any other.

use crate::egraph::rules::{parse_rule_file, TextRule};
use crate::ir::{Binary, Unary};
use std::fmt::Write;

/// The text of the generated rules, in the rule-file format.
pub fn text() -> String {
    let mut out = String::new();
    for u in Unary::ALL {
        let (name, ident) = (u.name(), u.ident().to_lowercase());
        writeln!(out, "# elementwise: vmap({name}(a)) = {name}(vmap(a))").unwrap();
        writeln!(out, "vmap-{ident}: (vmap ({name} ?a)) => ({name} (vmap ?a))").unwrap();
    }
    for b in Binary::ALL {
        let (op, ident) = (b.symbol(), b.ident().to_lowercase());
        writeln!(
            out,
            "# broadcasting, both mapped, one rank: A[b] {op} B[b] = (A {op} B)[b]"
        )
        .unwrap();
        writeln!(
            out,
            "vmap-{ident}-both: (vmap ({op} ?a ?b)) => ({op} (vmap ?a) (vmap ?b)) if mapped(?a), mapped(?b), rank(?a) == rank(?b)"
        )
        .unwrap();
        writeln!(
            out,
            "# broadcasting, p unmapped and of no higher rank: A[b] {op} p = (A {op} p)[b]"
        )
        .unwrap();
        writeln!(
            out,
            "vmap-{ident}-left: (vmap ({op} ?a ?p)) => ({op} (vmap ?a) ?p) if mapped(?a), unmapped(?p), rank(?a) >= rank(?p)"
        )
        .unwrap();
        writeln!(
            out,
            "# broadcasting, p unmapped and of no higher rank: p {op} A[b] = (p {op} A)[b]"
        )
        .unwrap();
        writeln!(
            out,
            "vmap-{ident}-right: (vmap ({op} ?p ?a)) => ({op} ?p (vmap ?a)) if unmapped(?p), mapped(?a), rank(?a) >= rank(?p)"
        )
        .unwrap();
    }
    out
}

/// The generated rules.
pub fn rules() -> Vec<TextRule> {
    parse_rule_file("the op tables (src/egraph/class_rules.rs)", &text()).expect("generated rules parse")
}
