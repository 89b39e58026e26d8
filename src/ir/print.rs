//! The printer: a program back to the `.graph` language. A node used more
//! than once is printed once, as a `let`; operators get the parentheses
//! their precedence needs, so that the text parses back to the same graph.
//! A single-use node is inlined into its user unless its text would nest
//! deeper than [`MAX_PRINT_NESTING`] or grow longer than [`MAX_INLINE_CHARS`]:
//! then it too becomes a `let`, so the text always parses back and the
//! printer's memory is linear in the program.

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
/// Deepest nesting the printer inlines into one expression: a node whose text
/// would nest deeper becomes a `let`. Well under the parser's limit
/// ([`crate::MAX_NESTING`]), so that printed programs parse back.
pub const MAX_PRINT_NESTING: usize = 32;
/// Longest text the printer inlines: a longer one becomes a `let`, which keeps
/// the printer's time and memory linear in the program.
pub const MAX_INLINE_CHARS: usize = 4_000;

/// A node's text: the text, its binding strength, and how deeply the parser
/// nests to read it (a call's argument, a parenthesized expression, the
/// operand of a prefix minus and the exponent of `^` are one level deeper; a
/// chain of `+ - * / @` adds none).
#[derive(Clone)]
struct Text {
    text: String,
    precedence: u8,
    nesting: usize,
}

struct Printer<'a> {
    program: &'a Program,
    /// The text of each node that has been printed and not yet used up.
    text: Vec<Option<Text>>,
}

impl Printer<'_> {
    fn get(&self, id: Id) -> &Text {
        self.text[usize::from(id)].as_ref().expect("children are printed first")
    }

    /// The child's text, in parentheses if it binds less tightly than `min`, and its nesting.
    fn wrap(&self, id: Id, min: u8) -> (String, usize) {
        let t = self.get(id);
        if t.precedence < min {
            (format!("({})", t.text), t.nesting + 1)
        } else {
            (t.text.clone(), t.nesting)
        }
    }

    fn render(&self, node: &Op) -> Text {
        let (text, precedence, nesting) = match node {
            Op::Num(n) if n.0.is_sign_negative() => (n.to_string(), PREFIX, 1),
            Op::Num(n) => (n.to_string(), ATOM, 0),
            Op::Var(v) => (v.to_string(), ATOM, 0),
            Op::Unary(Unary::Neg, a) => {
                let (text, nesting) = match self.program.expr[*a].as_num() {
                    // `-(2)`: a bare `-2` would parse back as the literal -2.
                    Some(n) if !n.is_sign_negative() => (format!("-({})", self.get(*a).text), 2),
                    _ => {
                        let (inner, nesting) = self.wrap(*a, PREFIX);
                        (format!("-{inner}"), nesting + 1)
                    }
                };
                (text, PREFIX, nesting)
            }
            Op::Binary(..) | Op::MatMul(_) => {
                let (symbol, p, assoc) = node.infix().expect("binary ops and matmul are infix");
                let [a, b] = [node.children()[0], node.children()[1]];
                let (left, right) = match assoc {
                    Assoc::Left => (p, p + 1),
                    // The exponent of `^` is parsed at the level of unary minus (`a ^ -b`).
                    Assoc::Right => (p + 1, p - 1),
                };
                let ((l, ln), (r, rn)) = (self.wrap(a, left), self.wrap(b, right));
                // The parser reads the exponent of `^` one level deeper.
                let rn = rn + usize::from(assoc == Assoc::Right);
                (format!("{l} {symbol} {r}"), p, ln.max(rn))
            }
            Op::Unary(..)
            | Op::Reduce(..)
            | Op::ReduceAxis(..)
            | Op::Structural(..)
            | Op::Map(_)
            | Op::Row(_)
            | Op::Chunks(_)
            | Op::Rows(_)
            | Op::Accumulate(_)
            | Op::Vmap(_) => {
                let children = node.children().iter().map(|&c| self.get(c));
                let nesting = children.clone().map(|t| t.nesting + 1).max().unwrap_or(1);
                let args: Vec<&str> = children.map(|t| t.text.as_str()).collect();
                (format!("{node}({})", args.join(", ")), ATOM, nesting)
            }
        };
        Text {
            text,
            precedence,
            nesting,
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
        // A single-use child's text now lives in its user's: free it, so that
        // memory stays linear in the program.
        for &c in node.children() {
            if uses[usize::from(c)] <= 1 {
                printer.text[usize::from(c)] = None;
            }
        }
        let inline = uses[i] <= 1 && rendered.nesting < MAX_PRINT_NESTING && rendered.text.len() <= MAX_INLINE_CHARS;
        if node.is_leaf() || inline {
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
        writeln!(out, "let {name} = {}", rendered.text).unwrap();
        printer.text[i] = Some(Text {
            text: name,
            precedence: ATOM,
            nesting: 0,
        });
    }
    for (name, id) in &program.outputs {
        writeln!(out, "out {name} = {}", printer.get(*id).text).unwrap();
    }
    out
}
