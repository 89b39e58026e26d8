//! Elaboration: statements to a [`Program`]. Resolves names, inlines `fn`s,
//! checks every shape where it is written, and shares equal subterms (CSE).

use crate::front::lex::lex;
use crate::front::source::{ParseError, Source, Span, MAX_CALL_DEPTH, MAX_NODES};
use crate::front::syntax::{Expr, Parser, Statement};
use crate::ir::{find_loops_located, Binary, ChildInfo, Decl, Num, Op, Program, Shape, Unary};
use egg::{Id, Language, RecExpr, Symbol};
use std::collections::HashMap;

const KEYWORDS: [&str; 5] = ["input", "param", "fn", "let", "out"];

struct Function {
    params: Vec<String>,
    body: Expr,
}

/// The node of an infix operator of the language.
fn infix(op: char, children: [Id; 2]) -> Op {
    if op == '@' {
        Op::MatMul(children)
    } else {
        let binary = op
            .to_string()
            .parse::<Binary>()
            .expect("the parser makes only + - * / ^ @");
        Op::Binary(binary, children)
    }
}

/// Turns statements into a program: resolves names, inlines `fn`s, checks shapes.
struct Elaborator<'a> {
    src: &'a Source<'a>,
    expr: Vec<Op>,
    shapes: Vec<Shape>,
    globals: HashMap<String, Id>,
    functions: HashMap<String, Function>,
    declared: HashMap<Symbol, Shape>,
    call_depth: usize,
    /// Whether each node runs per row of a loop (reads a `row`), checked as it is written.
    per_row: Vec<bool>,
    /// Where each node was written, for errors found once the program is whole.
    spans: Vec<Span>,
}

impl Elaborator<'_> {
    fn push(&mut self, op: Op, at: Span) -> Result<Id, ParseError> {
        if self.expr.len() >= MAX_NODES {
            return Err(self.src.error(
                at,
                format!("program too large: more than {MAX_NODES} nodes after inlining fns"),
            ));
        }
        let shape = match op.as_var() {
            Some(v) => self.declared[&v].clone(),
            None => op
                .infer_shape_from(|c| ChildInfo {
                    shape: &self.shapes[usize::from(c)],
                    constant: self.expr[usize::from(c)].as_num(),
                })
                .map_err(|e| self.src.shape_error(at, e))?,
        };
        let per_row = self.loop_check(&op, at)?;
        self.per_row.push(per_row);
        self.shapes.push(shape);
        self.spans.push(at);
        // A plain Vec: egg's RecExpr::add costs O(len) per call.
        self.expr.push(op);
        Ok(Id::from(self.expr.len() - 1))
    }

    /// Whether `op` runs per row of a loop; an error at `at` for a `row` of a
    /// per-row value (loops do not nest) or a loop whose body reads no row.
    /// The rest of a loop's checks (row counts) run on the whole program.
    fn loop_check(&self, op: &Op, at: Span) -> Result<bool, ParseError> {
        let per_row = |c: &Id| self.per_row[usize::from(*c)];
        if let Op::Row(y) | Op::Rows([y, _]) = op {
            if per_row(y) {
                return Err(self.src.error(
                    at,
                    format!("{op}: loops do not nest (rows of a value computed per row)"),
                ));
            }
            return Ok(true);
        }
        if let Some(body) = op.loop_body() {
            if !per_row(&body) {
                return Err(self.src.error(
                    at,
                    format!("{op}: the body does not read row(...) or rows(...), so every row would be the same"),
                ));
            }
            return Ok(false);
        }
        Ok(op.is_per_row(|c| per_row(&c)))
    }

    fn check_new_name(&self, name: &str, at: Span) -> Result<(), ParseError> {
        if KEYWORDS.contains(&name) {
            return Err(self
                .src
                .error(at, format!("`{name}` is a keyword and cannot be a name")));
        }
        if Op::call_arity(name).is_some() {
            return Err(self
                .src
                .error(at, format!("`{name}` is a built-in and cannot be redefined")));
        }
        if self.globals.contains_key(name) || self.functions.contains_key(name) {
            return Err(self.src.error(at, format!("`{name}` is already defined")));
        }
        Ok(())
    }

    fn elaborate(&mut self, e: &Expr, scope: &HashMap<String, Id>) -> Result<Id, ParseError> {
        match e {
            Expr::Number(v, at) => self.push(Op::Num(Num(*v)), *at),
            Expr::Name(name, at) => match scope.get(name).or_else(|| self.globals.get(name)) {
                Some(&id) => Ok(id),
                None if self.functions.contains_key(name) || Op::call_arity(name).is_some() => Err(self
                    .src
                    .error(*at, format!("`{name}` is a function: call it with arguments"))),
                None => Err(self.src.error(*at, format!("unknown name `{name}`"))),
            },
            Expr::Negate(operand, at) => {
                let a = self.elaborate(operand, scope)?;
                self.push(Op::Unary(Unary::Neg, a), *at)
            }
            Expr::Binary(op, left, right, at) => {
                let children = [self.elaborate(left, scope)?, self.elaborate(right, scope)?];
                self.push(infix(*op, children), *at)
            }
            Expr::Chain(first, rest) => {
                // A loop, not recursion: a chain may be as long as the file.
                let mut left = self.elaborate(first, scope)?;
                for (op, right, at) in rest {
                    let right = self.elaborate(right, scope)?;
                    left = self.push(infix(*op, [left, right]), *at)?;
                }
                Ok(left)
            }
            Expr::Call(name, args, at) => self.call(name, args, *at, scope),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], at: Span, scope: &HashMap<String, Id>) -> Result<Id, ParseError> {
        if let Some(arity) = Op::call_arity(name) {
            let mut children = Vec::with_capacity(args.len());
            for a in args {
                children.push(self.elaborate(a, scope)?);
            }
            let node = Op::from_call(name, children)
                .ok_or_else(|| self.src.error(at, format!("{name} takes {arity}, not {}", args.len())))?;
            for (position, (&child, arg)) in node.children().iter().zip(args).enumerate() {
                if node.integer_operand(position) && self.expr[usize::from(child)].as_num().is_none() {
                    return Err(self.src.error(
                        arg.span(),
                        format!(
                            "{name}: argument {} must be a non-negative integer literal",
                            position + 1
                        ),
                    ));
                }
            }
            return self.push(node, at);
        }
        let Some(function) = self.functions.get(name) else {
            return Err(self.src.error(at, format!("unknown function `{name}`")));
        };
        if function.params.len() != args.len() {
            return Err(self.src.error(
                at,
                format!("{name} takes {} arguments, not {}", function.params.len(), args.len()),
            ));
        }
        let (params, body) = (function.params.clone(), function.body.clone());
        let mut inner = HashMap::new();
        for (p, a) in params.iter().zip(args) {
            inner.insert(p.clone(), self.elaborate(a, scope)?);
        }
        self.call_depth += 1;
        if self.call_depth > MAX_CALL_DEPTH {
            return Err(self
                .src
                .error(at, format!("fn calls nested too deeply (more than {MAX_CALL_DEPTH})")));
        }
        let result = self.elaborate(&body, &inner);
        self.call_depth -= 1;
        result
    }

    /// Checks a `fn` body where it is defined: names must be its parameters,
    /// earlier globals, or earlier functions (so recursion cannot happen).
    fn check_body(&self, fname: &str, e: &Expr, params: &[String]) -> Result<(), ParseError> {
        match e {
            Expr::Number(..) => Ok(()),
            Expr::Name(n, at) => {
                if params.contains(n) || self.globals.contains_key(n) {
                    Ok(())
                } else {
                    Err(self.src.error(*at, format!("unknown name `{n}` in fn {fname}")))
                }
            }
            Expr::Negate(a, _) => self.check_body(fname, a, params),
            Expr::Binary(_, a, b, _) => {
                self.check_body(fname, a, params)?;
                self.check_body(fname, b, params)
            }
            Expr::Chain(first, rest) => {
                self.check_body(fname, first, params)?;
                rest.iter().try_for_each(|(_, e, _)| self.check_body(fname, e, params))
            }
            Expr::Call(n, args, at) => {
                if n == fname {
                    return Err(self
                        .src
                        .error(*at, format!("fn {fname} calls itself: recursion is not allowed")));
                }
                if Op::call_arity(n).is_none() && !self.functions.contains_key(n) {
                    return Err(self.src.error(*at, format!("unknown function `{n}` in fn {fname}")));
                }
                args.iter().try_for_each(|a| self.check_body(fname, a, params))
            }
        }
    }
}

/// Parses a program's text. `file` names it in error messages.
pub fn parse_program(file: &str, text: &str) -> Result<Program, ParseError> {
    // A byte-order mark, which some editors write first, is not part of the program.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = Source {
        file,
        lines: text.split('\n').map(|l| l.trim_end_matches('\r')).collect(),
    };
    let tokens = lex(&src, text)?;
    let statements = Parser::new(&src, tokens).statements()?;

    let mut el = Elaborator {
        src: &src,
        expr: Vec::new(),
        shapes: Vec::new(),
        globals: HashMap::new(),
        functions: HashMap::new(),
        declared: HashMap::new(),
        call_depth: 0,
        per_row: Vec::new(),
        spans: Vec::new(),
    };
    let (mut inputs, mut params, mut outputs, mut names) = (vec![], vec![], vec![], vec![]);
    let empty = HashMap::new();
    for statement in statements {
        match statement {
            Statement::Declare { param, name, shape, at } => {
                el.check_new_name(&name, at)?;
                el.declared.insert(Symbol::from(&name), shape.clone());
                let id = el.push(Op::Var(Symbol::from(&name)), at)?;
                el.globals.insert(name.clone(), id);
                let decl = Decl { name, shape };
                if param {
                    params.push(decl)
                } else {
                    inputs.push(decl)
                }
            }
            Statement::Function {
                name,
                params: ps,
                body,
                at,
            } => {
                el.check_new_name(&name, at)?;
                for (i, (p, pat)) in ps.iter().enumerate() {
                    if ps[..i].iter().any(|(q, _)| q == p) {
                        return Err(src.error(*pat, format!("parameter `{p}` appears twice in fn {name}")));
                    }
                }
                let ps: Vec<String> = ps.into_iter().map(|(p, _)| p).collect();
                el.check_body(&name, &body, &ps)?;
                el.functions.insert(name, Function { params: ps, body });
            }
            Statement::Let {
                output,
                name,
                value,
                at,
            } => {
                el.check_new_name(&name, at)?;
                if outputs.iter().any(|(o, _): &(String, Id)| *o == name) {
                    return Err(src.error(at, format!("`{name}` is already defined")));
                }
                let id = el.elaborate(&value, &empty)?;
                if output && el.per_row[usize::from(id)] {
                    return Err(src.error(
                        value.span(),
                        format!("out {name} reads row(...) outside of map (or rows(...) outside of chunks)"),
                    ));
                }
                if output {
                    outputs.push((name.clone(), id));
                }
                names.push((id, name.clone()));
                el.globals.insert(name, id);
            }
        }
    }
    if outputs.is_empty() {
        let end = Span {
            line: src.lines.len(),
            column: 1,
        };
        return Err(src.error(end, "the program has no `out` statement: expected at least one output"));
    }
    // A loop's errors are known once the program is whole: at the loop.
    if let Err((node, e)) = find_loops_located(&el.expr, &el.shapes) {
        return Err(src.shape_error(el.spans[node], e));
    }
    let end = Span {
        line: src.lines.len(),
        column: 1,
    };
    Program::new(inputs, params, RecExpr::from(el.expr), outputs, names).map_err(|e| src.shape_error(end, e))
}
