//! A program: declared inputs and params, one DAG of ops (equal subterms
//! shared), and named outputs.

use crate::ir::loops::{find_loops, Loops};
use crate::ir::op::Op;
use crate::ir::print::print_program;
use crate::ir::shape::{ChildInfo, Shape, ShapeError};
use crate::ir::structural::Window;
use egg::{Id, Language, RecExpr, Symbol};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::HashMap;

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
    loops: Loops,
    names: HashMap<Id, String>,
    nodes_before_cse: u128,
}

impl Program {
    /// Builds a program from a (possibly tree-shaped) expression: checks every
    /// shape, then shares equal subterms (hash-consing: a node equal to one
    /// already seen, children included, is that node).
    /// `names` are hints for the printer (`let` names).
    pub fn new(
        inputs: Vec<Decl>,
        params: Vec<Decl>,
        expr: RecExpr<Op>,
        outputs: Vec<(String, Id)>,
        names: Vec<(Id, String)>,
    ) -> Result<Program, ShapeError> {
        Self::check_parts(&inputs, &params, &expr, &outputs, &names)?;
        let vars = Self::declared(&inputs, &params);
        infer_shapes(&expr, &vars)?;
        let nodes_before_cse = tree_size(&expr, outputs.iter().map(|o| o.1));

        // Hash-consing: `class_of[i]` is the first node equal to node i.
        let mut unique: Vec<Op> = Vec::with_capacity(expr.len());
        let mut seen: FxHashMap<Op, Id> = FxHashMap::with_capacity_and_hasher(expr.len(), Default::default());
        let mut class_of: Vec<Id> = Vec::with_capacity(expr.len());
        for node in expr.as_ref() {
            let node = node.clone().map_children(|c| class_of[usize::from(c)]);
            let class = *seen.entry(node).or_insert_with_key(|node| {
                unique.push(node.clone());
                Id::from(unique.len() - 1)
            });
            class_of.push(class);
        }
        let roots: Vec<Id> = outputs.iter().map(|o| class_of[usize::from(o.1)]).collect();
        let (dag, new_id) = extract_dag(&roots, |class| unique[usize::from(class)].clone(), |c| c);
        let outputs: Vec<(String, Id)> = outputs
            .into_iter()
            .zip(&roots)
            .map(|((name, _), root)| (name, new_id[root]))
            .collect();
        let mut name_hints = HashMap::new();
        for (id, name) in names {
            if let Some(&n) = new_id.get(&class_of[usize::from(id)]) {
                name_hints.entry(n).or_insert(name);
            }
        }
        let shapes = infer_shapes(&dag, &vars)?;
        let loops = find_loops(dag.as_ref(), &shapes)?;
        if let Some((name, _)) = outputs.iter().find(|(_, id)| loops.per_row[usize::from(*id)]) {
            return Err(ShapeError::Loop {
                reason: format!("output {name} reads a row(...) outside of map"),
            });
        }
        Ok(Program {
            inputs,
            params,
            expr: dag,
            outputs,
            shapes,
            loops,
            names: name_hints,
            nodes_before_cse,
        })
    }

    /// Checks what [`Program::new`] is given fits together, so that a program
    /// built through the library is refused with a reason rather than a panic.
    fn check_parts(
        inputs: &[Decl],
        params: &[Decl],
        expr: &RecExpr<Op>,
        outputs: &[(String, Id)],
        names: &[(Id, String)],
    ) -> Result<(), ShapeError> {
        let malformed = |reason: String| Err(ShapeError::Malformed { reason });
        let mut seen = std::collections::HashSet::new();
        for d in inputs.iter().chain(params) {
            let mut chars = d.name.chars();
            let is_name = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !is_name {
                return malformed(format!(
                    "`{}` is not a name (letters, digits and _, not first a digit)",
                    d.name
                ));
            }
            if !seen.insert(d.name.as_str()) {
                return malformed(format!("`{}` is declared twice", d.name));
            }
            if let Err(reason) = d.shape.check_size() {
                return malformed(format!("`{}`: {reason}", d.name));
            }
        }
        for (i, node) in expr.as_ref().iter().enumerate() {
            if let Some(c) = node.children().iter().find(|&&c| usize::from(c) >= i) {
                return malformed(format!("node {i} ({node}) reads node {c}, which is not before it"));
            }
        }
        let len = expr.as_ref().len();
        for (name, id) in outputs {
            if usize::from(*id) >= len {
                return malformed(format!("output `{name}` is node {id}, but there are {len} nodes"));
            }
        }
        if let Some((id, name)) = names.iter().find(|(id, _)| usize::from(*id) >= len) {
            return malformed(format!(
                "the name `{name}` is given to node {id}, but there are {len} nodes"
            ));
        }
        Ok(())
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

    /// The loops (`map` nodes), their bodies, and which nodes run per row.
    pub fn loops(&self) -> &Loops {
        &self.loops
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

    /// How many times each node is used: by other nodes and as an output.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0usize; self.expr.len()];
        for node in self.expr.as_ref() {
            for &c in node.children() {
                uses[usize::from(c)] += 1;
            }
        }
        for (_, id) in &self.outputs {
            uses[usize::from(*id)] += 1;
        }
        uses
    }

    /// The name the source gave node `id` (a `let`), if any.
    pub fn name_hint(&self, id: Id) -> Option<&String> {
        self.names.get(&id)
    }

    /// The id of the variable `name`, if the program uses it.
    pub fn var_id(&self, name: &str) -> Option<Id> {
        self.expr
            .as_ref()
            .iter()
            .position(|n| n.as_var().is_some_and(|v| v.as_str() == name))
            .map(Id::from)
    }

    /// The value of node `id` if it is a number literal.
    pub fn literal(&self, id: Id) -> Option<f64> {
        self.expr[id].as_num()
    }

    /// If node `id` is a window of its operand (an `index` or a `slice`, see
    /// [`Window`]): the operand and the window.
    pub fn window(&self, id: Id) -> Option<(Id, Window)> {
        let Op::Structural(s, children) = &self.expr[id] else {
            return None;
        };
        let arrays = s.arrays_of(children.len())?;
        let ints: Option<Vec<usize>> = children[arrays..]
            .iter()
            .map(|&c| self.literal(c).map(|v| v as usize))
            .collect();
        Some((children[0], s.window(&ints?)?))
    }
}

/// The shape of every node of `expr`, or the first shape error.
pub fn infer_shapes(expr: &RecExpr<Op>, vars: &HashMap<Symbol, Shape>) -> Result<Vec<Shape>, ShapeError> {
    let mut shapes: Vec<Shape> = Vec::with_capacity(expr.len());
    for node in expr.as_ref() {
        let shape = match node.as_var() {
            Some(v) => vars
                .get(&v)
                .cloned()
                .ok_or_else(|| ShapeError::NotExecutable { op: v.to_string() })?,
            None => node.infer_shape_from(|c| ChildInfo {
                shape: &shapes[usize::from(c)],
                constant: expr[c].as_num(),
            })?,
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
) -> (RecExpr<Op>, FxHashMap<Id, Id>) {
    let mut expr: Vec<Op> = Vec::new();
    let mut placed: FxHashMap<Id, Id> = FxHashMap::default();
    let mut on_stack: FxHashSet<Id> = FxHashSet::default();
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
