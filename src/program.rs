//! A program: declared inputs and params, one DAG of ops (equal subterms
//! shared), and named outputs; with the printer back to the language.

use crate::analysis::{Graph, ShapeAnalysis};
use crate::language::Op;
use crate::shape::{ChildInfo, Shape, ShapeError};
use egg::{Id, Language, RecExpr, Symbol};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// A declared `input` or `param`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decl {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Shape,
}

/// A program after inlining and CSE: a DAG in which no two nodes are equal.
#[derive(Clone, Debug)]
pub struct Program {
    /// Per-example data (batched when the program is batched).
    pub inputs: Vec<Decl>,
    /// Parameters, shared by every example.
    pub params: Vec<Decl>,
    /// The nodes, children before parents.
    pub expr: RecExpr<Op>,
    /// The outputs by name, in declaration order.
    pub outputs: Vec<(String, Id)>,
    shapes: Vec<Shape>,
    names: HashMap<Id, String>,
    nodes_before_cse: u128,
}

impl Program {
    /// Builds a program from a (possibly tree-shaped) expression: checks every
    /// shape, then shares equal subterms by adding it to an e-graph.
    /// `names` are hints for the printer (`let` names).
    pub fn new(
        inputs: Vec<Decl>,
        params: Vec<Decl>,
        expr: RecExpr<Op>,
        outputs: Vec<(String, Id)>,
        names: Vec<(Id, String)>,
    ) -> Result<Program, ShapeError> {
        let vars = Self::declared(&inputs, &params);
        infer_shapes(&expr, &vars)?;
        let nodes_before_cse = tree_size(&expr, outputs.iter().map(|o| o.1));

        let mut egraph = Graph::new(ShapeAnalysis::new(vars.clone()));
        let mut class_of = Vec::with_capacity(expr.len());
        for node in expr.as_ref() {
            let node = node.clone().map_children(|c| class_of[usize::from(c)]);
            class_of.push(egraph.add(node));
        }
        egraph.rebuild();
        let roots: Vec<Id> = outputs
            .iter()
            .map(|o| egraph.find(class_of[usize::from(o.1)]))
            .collect();
        let (dag, new_id) = extract_dag(&roots, |class| egraph[class].nodes[0].clone(), |c| egraph.find(c));
        let outputs = outputs
            .into_iter()
            .zip(&roots)
            .map(|((name, _), root)| (name, new_id[root]))
            .collect();
        let mut name_hints = HashMap::new();
        for (id, name) in names {
            if let Some(&n) = new_id.get(&egraph.find(class_of[usize::from(id)])) {
                name_hints.entry(n).or_insert(name);
            }
        }
        let shapes = infer_shapes(&dag, &vars)?;
        Ok(Program {
            inputs,
            params,
            expr: dag,
            outputs,
            shapes,
            names: name_hints,
            nodes_before_cse,
        })
    }

    fn declared(inputs: &[Decl], params: &[Decl]) -> HashMap<Symbol, Shape> {
        inputs
            .iter()
            .chain(params)
            .map(|d| (Symbol::from(&d.name), d.shape.clone()))
            .collect()
    }

    /// The shape of every declared input and param.
    pub fn var_shapes(&self) -> HashMap<Symbol, Shape> {
        Self::declared(&self.inputs, &self.params)
    }

    /// The shape of node `id`.
    pub fn shape(&self, id: Id) -> &Shape {
        &self.shapes[usize::from(id)]
    }

    /// The shape of every node, by position.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// Number of nodes (after CSE).
    pub fn node_count(&self) -> usize {
        self.expr.len()
    }

    /// Number of nodes the program had written as a tree (every use of a
    /// shared subterm counted again); saturates at `u128::MAX`.
    pub fn nodes_before_cse(&self) -> u128 {
        self.nodes_before_cse
    }

    /// Whether `name` is a declared input.
    pub fn is_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|d| d.name == name)
    }

    /// Prints the program in the language. Shared nodes are printed once, as a `let`.
    pub fn to_text(&self) -> String {
        print_program(self)
    }
}

/// The shape of every node of `expr`, or the first shape error.
pub fn infer_shapes(expr: &RecExpr<Op>, vars: &HashMap<Symbol, Shape>) -> Result<Vec<Shape>, ShapeError> {
    let mut shapes: Vec<Shape> = Vec::with_capacity(expr.len());
    for node in expr.as_ref() {
        let shape = match node {
            Op::Var(v) => vars
                .get(v)
                .cloned()
                .ok_or_else(|| ShapeError::NotExecutable { op: v.to_string() })?,
            _ => {
                let children: Vec<ChildInfo> = node
                    .children()
                    .iter()
                    .map(|&c| ChildInfo {
                        shape: &shapes[usize::from(c)],
                        constant: match &expr[c] {
                            Op::Num(n) => Some(n.0),
                            _ => None,
                        },
                    })
                    .collect();
                node.infer_shape(&children)?
            }
        };
        shapes.push(shape);
    }
    Ok(shapes)
}

/// Size of the expression as a tree, summed over `roots`.
fn tree_size(expr: &RecExpr<Op>, roots: impl Iterator<Item = Id>) -> u128 {
    let mut size = vec![0u128; expr.len()];
    for (i, node) in expr.as_ref().iter().enumerate() {
        size[i] = node
            .children()
            .iter()
            .fold(1u128, |acc, &c| acc.saturating_add(size[usize::from(c)]));
    }
    roots.fold(0u128, |acc, r| acc.saturating_add(size[usize::from(r)]))
}

/// Builds a DAG expression from the classes reachable from `roots`, taking
/// `choose(class)` as each class's node; children come before parents, in
/// depth-first order from the roots (iterative, so deep graphs are fine).
/// Returns the expression and where each class landed in it.
pub fn extract_dag(
    roots: &[Id],
    choose: impl Fn(Id) -> Op,
    canonical: impl Fn(Id) -> Id,
) -> (RecExpr<Op>, HashMap<Id, Id>) {
    let mut expr: Vec<Op> = Vec::new();
    let mut placed: HashMap<Id, Id> = HashMap::new();
    let mut on_stack: HashSet<Id> = HashSet::new();
    for &root in roots {
        let mut stack = vec![(canonical(root), false)];
        while let Some((class, expanded)) = stack.pop() {
            if placed.contains_key(&class) {
                continue;
            }
            let node = choose(class);
            if expanded {
                let node = node.map_children(|c| placed[&canonical(c)]);
                expr.push(node);
                placed.insert(class, Id::from(expr.len() - 1));
                continue;
            }
            assert!(on_stack.insert(class), "cycle in the chosen program at class {class}");
            stack.push((class, true));
            for &child in node.children().iter().rev() {
                let child = canonical(child);
                if !placed.contains_key(&child) {
                    stack.push((child, false));
                }
            }
        }
    }
    (RecExpr::from(expr), placed)
}

/// Binding strength, as in Python: sums < products < unary minus < power < atoms.
fn precedence(node: &Op) -> u8 {
    match node {
        Op::Add(_) | Op::Sub(_) => 1,
        Op::Mul(_) | Op::Div(_) | Op::MatMul(_) => 2,
        Op::Neg(_) => 3,
        Op::Num(n) if n.0.is_sign_negative() => 3,
        Op::Pow(_) => 4,
        _ => 5,
    }
}

struct Printer<'a> {
    program: &'a Program,
    /// The text of each node that has been printed, with its precedence.
    text: Vec<Option<(String, u8)>>,
}

impl Printer<'_> {
    fn get(&self, id: Id) -> &(String, u8) {
        self.text[usize::from(id)].as_ref().expect("children are printed first")
    }

    fn wrap(&self, id: Id, min: u8) -> String {
        let (s, p) = self.get(id);
        if *p < min {
            format!("({s})")
        } else {
            s.clone()
        }
    }

    fn render(&self, node: &Op) -> (String, u8) {
        let p = precedence(node);
        let s = match node {
            Op::Num(n) => n.to_string(),
            Op::Var(v) => v.to_string(),
            Op::Pow([a, e]) => format!("{} ^ {}", self.wrap(*a, p + 1), self.get(*e).0),
            Op::Neg(a) => match &self.program.expr[*a] {
                // `-(2)`: a bare `-2` would parse back as the literal -2.
                Op::Num(n) if !n.0.is_sign_negative() => format!("-({n})"),
                _ => format!("-{}", self.wrap(*a, p)),
            },
            other => {
                if let Some(symbol) = other.infix() {
                    let [a, b] = [other.children()[0], other.children()[1]];
                    format!("{} {symbol} {}", self.wrap(a, p), self.wrap(b, p + 1))
                } else {
                    let args: Vec<String> = other.children().iter().map(|&c| self.get(c).0.clone()).collect();
                    format!("{other}({})", args.join(", "))
                }
            }
        };
        (s, p)
    }
}

fn print_program(program: &Program) -> String {
    let expr = program.expr.as_ref();
    let mut uses = vec![0usize; expr.len()];
    for node in expr {
        for &c in node.children() {
            uses[usize::from(c)] += 1;
        }
    }
    for (_, id) in &program.outputs {
        uses[usize::from(*id)] += 1;
    }
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
        let is_leaf = node.is_leaf();
        if !is_leaf && uses[i] > 1 {
            let hint = program.names.get(&Id::from(i)).filter(|n| !taken.contains(*n)).cloned();
            let name = hint.unwrap_or_else(|| loop {
                counter += 1;
                let candidate = format!("t{counter}");
                if !taken.contains(&candidate) {
                    break candidate;
                }
            });
            taken.insert(name.clone());
            writeln!(out, "let {name} = {}", rendered.0).unwrap();
            printer.text[i] = Some((name, 5));
        } else {
            printer.text[i] = Some(rendered);
        }
    }
    for (name, id) in &program.outputs {
        writeln!(out, "out {name} = {}", printer.get(*id).0).unwrap();
    }
    out
}
