//! The `.graph` language: a lexer, a recursive-descent parser with Python's
//! precedence, and elaboration (name resolution, `fn` inlining, shape checks)
//! into a [`Program`]. Every mistake becomes a [`ParseError`] that points at
//! the file, line and column.

use crate::language::{Num, Op};
use crate::program::{Decl, Program};
use crate::shape::{ChildInfo, Shape};
use egg::{Id, Language, RecExpr, Symbol};
use std::collections::HashMap;
use std::fmt;

/// Deepest expression nesting the parser accepts (guards the stack).
pub const MAX_NESTING: usize = 128;
/// Deepest chain of `fn` calls inside `fn` calls.
pub const MAX_CALL_DEPTH: usize = 32;
/// Most nodes a program may have after `fn` inlining, before CSE.
pub const MAX_NODES: usize = 1_000_000;

/// A mistake in a program's text, with where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ParseError {
    /// The file name (or `<input>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The text of that line.
    pub source_line: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        writeln!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{number} | {}", self.source_line)?;
        write!(f, "{pad} | {}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

/// A position in the source: byte offset, 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    line: usize,
    column: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Number(f64),
    Punct(char),
    Newline,
    Eof,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "`{s}`"),
            Token::Number(n) => write!(f, "number {n}"),
            Token::Punct(c) => write!(f, "`{c}`"),
            Token::Newline => write!(f, "end of line"),
            Token::Eof => write!(f, "end of file"),
        }
    }
}

struct Source<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
}

impl Source<'_> {
    fn error(&self, at: Span, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line: at.line,
            column: at.column,
            source_line: self.lines.get(at.line - 1).unwrap_or(&"").to_string(),
            message: message.into(),
        }
    }
}

fn lex(src: &Source, text: &str) -> Result<Vec<(Token, Span)>, ParseError> {
    let mut tokens = Vec::new();
    let mut depth = 0usize; // newlines inside brackets do not end a statement
    for (line_index, line) in text.split('\n').enumerate() {
        let chars: Vec<char> = line.trim_end_matches('\r').chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let span = Span {
                line: line_index + 1,
                column: i + 1,
            };
            if c == '#' {
                break;
            } else if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push((Token::Ident(chars[start..i].iter().collect()), span));
            } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                    let mut j = i + 1;
                    if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                        j += 1;
                    }
                    if j < chars.len() && chars[j].is_ascii_digit() {
                        i = j;
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
                let literal: String = chars[start..i].iter().collect();
                let value = literal
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| src.error(span, format!("`{literal}` is not a valid number")))?;
                tokens.push((Token::Number(value), span));
            } else if "()[],:=+-*/@^".contains(c) {
                match c {
                    '(' | '[' => depth += 1,
                    ')' | ']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                tokens.push((Token::Punct(c), span));
                i += 1;
            } else {
                return Err(src.error(span, format!("unexpected character `{c}`")));
            }
        }
        if depth == 0 {
            let end = Span {
                line: line_index + 1,
                column: chars.len() + 1,
            };
            tokens.push((Token::Newline, end));
        }
    }
    let last = text.split('\n').count();
    let eof = Span {
        line: last,
        column: text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
    };
    tokens.push((Token::Eof, eof));
    Ok(tokens)
}

/// The syntax tree of an expression, before names are resolved.
#[derive(Clone, Debug)]
enum Expr {
    Number(f64, Span),
    Name(String, Span),
    Call(String, Vec<Expr>, Span),
    Binary(char, Box<Expr>, Box<Expr>, Span),
    Negate(Box<Expr>, Span),
}

impl Expr {
    fn span(&self) -> Span {
        match self {
            Expr::Number(_, s)
            | Expr::Name(_, s)
            | Expr::Call(_, _, s)
            | Expr::Binary(_, _, _, s)
            | Expr::Negate(_, s) => *s,
        }
    }
}

enum Statement {
    Declare {
        param: bool,
        name: String,
        shape: Shape,
        at: Span,
    },
    Function {
        name: String,
        params: Vec<(String, Span)>,
        body: Expr,
        at: Span,
    },
    Let {
        output: bool,
        name: String,
        value: Expr,
        at: Span,
    },
}

struct Parser<'a> {
    src: &'a Source<'a>,
    tokens: Vec<(Token, Span)>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].0
    }
    fn span(&self) -> Span {
        self.tokens[self.pos].1
    }
    fn next(&mut self) -> (Token, Span) {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }
    fn unexpected(&self, expected: &str) -> ParseError {
        self.src
            .error(self.span(), format!("expected {expected}, found {}", self.peek()))
    }
    fn punct(&mut self, c: char) -> Result<Span, ParseError> {
        if self.peek() == &Token::Punct(c) {
            Ok(self.next().1)
        } else {
            Err(self.unexpected(&format!("`{c}`")))
        }
    }
    fn ident(&mut self, what: &str) -> Result<(String, Span), ParseError> {
        match self.next() {
            (Token::Ident(s), span) => Ok((s, span)),
            _ => {
                self.pos -= 1;
                Err(self.unexpected(what))
            }
        }
    }

    fn statements(&mut self) -> Result<Vec<Statement>, ParseError> {
        let mut out = Vec::new();
        loop {
            match self.peek().clone() {
                Token::Eof => return Ok(out),
                Token::Newline => {
                    self.next();
                }
                Token::Ident(keyword) => {
                    let at = self.next().1;
                    let statement = match keyword.as_str() {
                        "input" | "param" => {
                            let (name, at) = self.ident("a name")?;
                            self.punct(':')?;
                            let shape = self.shape()?;
                            Statement::Declare {
                                param: keyword == "param",
                                name,
                                shape,
                                at,
                            }
                        }
                        "fn" => {
                            let (name, at) = self.ident("a function name")?;
                            self.punct('(')?;
                            let mut params = Vec::new();
                            while self.peek() != &Token::Punct(')') {
                                params.push(self.ident("a parameter name")?);
                                if self.peek() != &Token::Punct(')') {
                                    self.punct(',')?;
                                }
                            }
                            self.punct(')')?;
                            self.punct('=')?;
                            let body = self.expr()?;
                            Statement::Function { name, params, body, at }
                        }
                        "let" | "out" => {
                            let (name, at) = self.ident("a name")?;
                            self.punct('=')?;
                            let value = self.expr()?;
                            Statement::Let {
                                output: keyword == "out",
                                name,
                                value,
                                at,
                            }
                        }
                        _ => {
                            return Err(self.src.error(
                                at,
                                format!("expected a statement (input, param, fn, let or out), found `{keyword}`"),
                            ))
                        }
                    };
                    out.push(statement);
                    if !matches!(self.peek(), Token::Newline | Token::Eof) {
                        return Err(self.unexpected("end of line"));
                    }
                }
                _ => return Err(self.unexpected("a statement (input, param, fn, let or out)")),
            }
        }
    }

    fn shape(&mut self) -> Result<Shape, ParseError> {
        self.punct('[')?;
        let mut dims = Vec::new();
        while self.peek() != &Token::Punct(']') {
            let (token, span) = self.next();
            match token {
                Token::Number(v) if v >= 1.0 && v == v.trunc() && v <= 1e12 => dims.push(v as usize),
                _ => return Err(self.src.error(span, "expected a dimension (a positive integer)")),
            }
            if self.peek() != &Token::Punct(']') {
                self.punct(',')?;
            }
        }
        self.punct(']')?;
        let shape = Shape(dims);
        shape
            .check_size()
            .map_err(|e| self.src.error(self.tokens[self.pos - 1].1, e))?;
        Ok(shape)
    }

    fn nest(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.src.error(
                self.span(),
                format!("expression nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.nest()?;
        let mut left = self.term()?;
        while let Token::Punct(op @ ('+' | '-')) = *self.peek() {
            let at = self.next().1;
            let right = self.term()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right), at);
        }
        self.depth -= 1;
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while let Token::Punct(op @ ('*' | '/' | '@')) = *self.peek() {
            let at = self.next().1;
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right), at);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == &Token::Punct('-') {
            self.nest()?;
            let at = self.next().1;
            // `-2` is the literal -2 (so that printed negative literals parse
            // back), but `-2 ^ 2` is `-(2 ^ 2)` and `-(2)` a negation.
            if let Token::Number(v) = *self.peek() {
                if self.tokens[self.pos + 1].0 != Token::Punct('^') {
                    self.next();
                    self.depth -= 1;
                    return Ok(Expr::Number(-v, at));
                }
            }
            let operand = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Negate(Box::new(operand), at));
        }
        self.power()
    }

    fn power(&mut self) -> Result<Expr, ParseError> {
        let base = self.atom()?;
        if self.peek() == &Token::Punct('^') {
            self.nest()?;
            let at = self.next().1;
            let exponent = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Binary('^', Box::new(base), Box::new(exponent), at));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let (token, span) = self.next();
        match token {
            Token::Number(v) => Ok(Expr::Number(v, span)),
            Token::Punct('(') => {
                let e = self.expr()?;
                self.punct(')')?;
                Ok(e)
            }
            Token::Ident(name) if self.peek() == &Token::Punct('(') => {
                self.next();
                self.nest()?;
                let mut args = Vec::new();
                while self.peek() != &Token::Punct(')') {
                    args.push(self.expr()?);
                    match self.peek() {
                        Token::Punct(')') => {}
                        Token::Punct(',') => {
                            self.next();
                        }
                        _ => return Err(self.unexpected("`,` or `)`")),
                    }
                }
                self.punct(')')?;
                self.depth -= 1;
                Ok(Expr::Call(name, args, span))
            }
            Token::Ident(name) => Ok(Expr::Name(name, span)),
            _ => {
                self.pos -= 1;
                Err(self.unexpected("an expression"))
            }
        }
    }
}

const KEYWORDS: [&str; 5] = ["input", "param", "fn", "let", "out"];

struct Function {
    params: Vec<String>,
    body: Expr,
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
}

impl Elaborator<'_> {
    fn push(&mut self, op: Op, at: Span) -> Result<Id, ParseError> {
        if self.expr.len() >= MAX_NODES {
            return Err(self.src.error(
                at,
                format!("program too large: more than {MAX_NODES} nodes after inlining fns"),
            ));
        }
        let shape = match &op {
            Op::Var(v) => self.declared[v].clone(),
            _ => {
                let children: Vec<ChildInfo> = op
                    .children()
                    .iter()
                    .map(|&c| ChildInfo {
                        shape: &self.shapes[usize::from(c)],
                        constant: match &self.expr[usize::from(c)] {
                            Op::Num(n) => Some(n.0),
                            _ => None,
                        },
                    })
                    .collect();
                op.infer_shape(&children)
                    .map_err(|e| self.src.error(at, e.to_string()))?
            }
        };
        self.shapes.push(shape);
        // A plain Vec: egg's RecExpr::add costs O(len) per call.
        self.expr.push(op);
        Ok(Id::from(self.expr.len() - 1))
    }

    fn check_new_name(&self, name: &str, at: Span) -> Result<(), ParseError> {
        if KEYWORDS.contains(&name) {
            return Err(self
                .src
                .error(at, format!("`{name}` is a keyword and cannot be a name")));
        }
        if Op::builtin_arity(name).is_some() {
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
                None if self.functions.contains_key(name) || Op::builtin_arity(name).is_some() => Err(self
                    .src
                    .error(*at, format!("`{name}` is a function: call it with arguments"))),
                None => Err(self.src.error(*at, format!("unknown name `{name}`"))),
            },
            Expr::Negate(operand, at) => {
                let a = self.elaborate(operand, scope)?;
                self.push(Op::Neg(a), *at)
            }
            Expr::Binary('^', base, exponent, at) => {
                let a = self.elaborate(base, scope)?;
                let Expr::Number(p, _) = **exponent else {
                    return Err(self
                        .src
                        .error(exponent.span(), "^: the exponent must be a number literal"));
                };
                let p = self.push(Op::Num(Num(p)), exponent.span())?;
                self.push(Op::Pow([a, p]), *at)
            }
            Expr::Binary(op, left, right, at) => {
                let children = [self.elaborate(left, scope)?, self.elaborate(right, scope)?];
                let node = match op {
                    '+' => Op::Add(children),
                    '-' => Op::Sub(children),
                    '*' => Op::Mul(children),
                    '/' => Op::Div(children),
                    _ => Op::MatMul(children),
                };
                self.push(node, *at)
            }
            Expr::Call(name, args, at) => self.call(name, args, *at, scope),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], at: Span, scope: &HashMap<String, Id>) -> Result<Id, ParseError> {
        if let Some(arity) = Op::builtin_arity(name) {
            let mut children = Vec::with_capacity(args.len());
            for a in args {
                children.push(self.elaborate(a, scope)?);
            }
            let node = Op::builtin(name, children)
                .ok_or_else(|| self.src.error(at, format!("{name} takes {arity}, not {}", args.len())))?;
            for (position, (&child, arg)) in node.children().iter().zip(args).enumerate() {
                if node.is_integer_operand(position) && !matches!(self.expr[usize::from(child)], Op::Num(_)) {
                    return Err(self.src.error(
                        arg.span(),
                        format!("{name}: argument {} must be an integer literal", position + 1),
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
            Expr::Call(n, args, at) => {
                if n == fname {
                    return Err(self
                        .src
                        .error(*at, format!("fn {fname} calls itself: recursion is not allowed")));
                }
                if Op::builtin_arity(n).is_none() && !self.functions.contains_key(n) {
                    return Err(self.src.error(*at, format!("unknown function `{n}` in fn {fname}")));
                }
                args.iter().try_for_each(|a| self.check_body(fname, a, params))
            }
        }
    }
}

/// Parses a program's text. `file` names it in error messages.
pub fn parse_program(file: &str, text: &str) -> Result<Program, ParseError> {
    let src = Source {
        file,
        lines: text.split('\n').map(|l| l.trim_end_matches('\r')).collect(),
    };
    let tokens = lex(&src, text)?;
    let statements = Parser {
        src: &src,
        tokens,
        pos: 0,
        depth: 0,
    }
    .statements()?;

    let mut el = Elaborator {
        src: &src,
        expr: Vec::new(),
        shapes: Vec::new(),
        globals: HashMap::new(),
        functions: HashMap::new(),
        declared: HashMap::new(),
        call_depth: 0,
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
    let end = Span {
        line: src.lines.len(),
        column: 1,
    };
    Program::new(inputs, params, RecExpr::from(el.expr), outputs, names).map_err(|e| src.error(end, e.to_string()))
}

/// Reads and parses a `.graph` file; invalid UTF-8 is reported with its position.
pub fn parse_file(path: &std::path::Path) -> Result<Program, crate::Error> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| crate::Error::Io(format!("{file}: {e}")))?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let line = good.matches('\n').count() + 1;
            let line_text = good.rsplit('\n').next().unwrap_or("");
            return Err(crate::Error::Parse(Box::new(ParseError {
                file,
                line,
                column: line_text.chars().count() + 1,
                source_line: line_text.to_string(),
                message: "invalid UTF-8: the file must be UTF-8 text".into(),
            })));
        }
    };
    parse_program(&file, text).map_err(|e| crate::Error::Parse(Box::new(e)))
}
