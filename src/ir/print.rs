//! The printer: a program back to the `.graph` language. A node used more
//! than once is printed once, as a `let`; operators get the parentheses
//! their precedence needs, so that the text parses back to the same graph.

use crate::ir::binary::Assoc;
use crate::ir::op::Op;
use crate::ir::program::Program;
use crate::ir::unary::Unary;
use egg::{Id, Language};
use std::collections::HashSet;
use std::fmt::Write;

/// Binding strength of an atom (a name, a call, a parenthesized expression).
const ATOM: u8 = 5;
/// Binding strength of a prefix minus (and of a negative literal).
const PREFIX: u8 = 3;

struct Printer<'a> {
    program: &'a Program,
    /// The text of each node that has been printed, with its precedence.
    text: Vec<Option<(String, u8)>>,
}

impl Printer<'_> {
    fn get(&self, id: Id) -> &(String, u8) {
        self.text[usize::from(id)].as_ref().expect("children are printed first")
    }

    /// The child's text, in parentheses if it binds less tightly than `min`.
    fn wrap(&self, id: Id, min: u8) -> String {
        let (s, p) = self.get(id);
        if *p < min {
            format!("({s})")
        } else {
            s.clone()
        }
    }

    fn render(&self, node: &Op) -> (String, u8) {
        match node {
            Op::Num(n) => (n.to_string(), if n.0.is_sign_negative() { PREFIX } else { ATOM }),
            Op::Var(v) => (v.to_string(), ATOM),
            Op::Unary(Unary::Neg, a) => {
                let text = match self.program.expr[*a].as_num() {
                    // `-(2)`: a bare `-2` would parse back as the literal -2.
                    Some(n) if !n.is_sign_negative() => format!("-({})", self.get(*a).0),
                    _ => format!("-{}", self.wrap(*a, PREFIX)),
                };
                (text, PREFIX)
            }
            Op::Binary(..) | Op::MatMul(_) => {
                let (symbol, p, assoc) = node.infix().expect("binary ops and matmul are infix");
                let [a, b] = [node.children()[0], node.children()[1]];
                let (left, right) = match assoc {
                    Assoc::Left => (p, p + 1),
                    // The exponent of `^` is parsed at the level of unary minus (`a ^ -b`).
                    Assoc::Right => (p + 1, p - 1),
                };
                (format!("{} {symbol} {}", self.wrap(a, left), self.wrap(b, right)), p)
            }
            Op::Unary(..)
            | Op::Reduce(..)
            | Op::ReduceAxis(..)
            | Op::Transpose(_)
            | Op::Permute(_)
            | Op::Expand(_)
            | Op::Index(_)
            | Op::Stack(_)
            | Op::Repeat(_)
            | Op::Map(_)
            | Op::Row(_)
            | Op::Chunks(_)
            | Op::Rows(_)
            | Op::Vmap(_) => {
                let args: Vec<&str> = node.children().iter().map(|&c| self.get(c).0.as_str()).collect();
                (format!("{node}({})", args.join(", ")), ATOM)
            }
        }
    }
}

/// The program as text.
pub fn print_program(program: &Program) -> String {
    let expr = program.expr.as_ref();
    let uses = program.use_counts();
    let mut taken: HashSet<String> = program
        .inputs
        .iter()
        .chain(&program.params)
        .map(|d| d.name.clone())
        .chain(program.outputs.iter().map(|o| o.0.clone()))
        .collect();
    let mut out = String::new();
    for d in &program.inputs {
        writeln!(out, "input {}: {}", d.name, d.shape).unwrap();
    }
    for d in &program.params {
        writeln!(out, "param {}: {}", d.name, d.shape).unwrap();
    }
    let mut printer = Printer {
        program,
        text: vec![None; expr.len()],
    };
    let mut counter = 0;
    for (i, node) in expr.iter().enumerate() {
        let rendered = printer.render(node);
        if node.is_leaf() || uses[i] <= 1 {
            printer.text[i] = Some(rendered);
            continue;
        }
        let hint = program.name_hint(Id::from(i)).filter(|n| !taken.contains(*n)).cloned();
        let name = hint.unwrap_or_else(|| loop {
            counter += 1;
            let candidate = format!("t{counter}");
            if !taken.contains(&candidate) {
                break candidate;
            }
        });
        taken.insert(name.clone());
        writeln!(out, "let {name} = {}", rendered.0).unwrap();
        printer.text[i] = Some((name, ATOM));
    }
    for (name, id) in &program.outputs {
        writeln!(out, "out {name} = {}", printer.get(*id).0).unwrap();
    }
    out
}
