//! The parser: tokens to statements and expression trees, by recursive
//! descent with Python's precedence (`^` tightest and right-associative, then
//! unary minus, then `* / @`, then `+ -`).

use crate::front::lex::Token;
use crate::front::source::{ParseError, Source, Span, MAX_NESTING};
use crate::ir::Shape;

/// The syntax tree of an expression, before names are resolved.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Number(f64, Span),
    Name(String, Span),
    Call(String, Vec<Expr>, Span),
    /// `^`, which is right-associative: its nesting counts towards the limit.
    Binary(char, Box<Expr>, Box<Expr>, Span),
    /// A left-associative chain `e0 op1 e1 op2 e2 ...` of `+ -` or of `* / @`,
    /// kept flat so that a long chain costs no recursion depth (each operator
    /// with its span, where an error about it points).
    Chain(Box<Expr>, Vec<(char, Expr, Span)>),
    Negate(Box<Expr>, Span),
}

impl Expr {
    pub(crate) fn span(&self) -> Span {
        match self {
            Expr::Number(_, s)
            | Expr::Name(_, s)
            | Expr::Call(_, _, s)
            | Expr::Binary(_, _, _, s)
            | Expr::Negate(_, s) => *s,
            Expr::Chain(first, _) => first.span(),
        }
    }
}

pub(crate) enum Statement {
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

pub(crate) struct Parser<'a> {
    src: &'a Source<'a>,
    tokens: Vec<(Token, Span)>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    /// A parser over `tokens` of `src`.
    pub(crate) fn new(src: &'a Source<'a>, tokens: Vec<(Token, Span)>) -> Self {
        Parser {
            src,
            tokens,
            pos: 0,
            depth: 0,
        }
    }
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

    pub(crate) fn statements(&mut self) -> Result<Vec<Statement>, ParseError> {
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

    /// An expression: one level of nesting (the whole, a parenthesized
    /// expression, a call's argument); a chain of `+ -` adds none.
    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.nest()?;
        let first = self.term()?;
        let mut rest = Vec::new();
        while let Token::Punct(op @ ('+' | '-')) = *self.peek() {
            let at = self.next().1;
            rest.push((op, self.term()?, at));
        }
        self.depth -= 1;
        Ok(chain(first, rest))
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        while let Token::Punct(op @ ('*' | '/' | '@')) = *self.peek() {
            let at = self.next().1;
            rest.push((op, self.unary()?, at));
        }
        Ok(chain(first, rest))
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
                // Each argument is an `expr`, one level deeper: a call counts once.
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

/// `first` alone, or the chain `first op e ...`.
fn chain(first: Expr, rest: Vec<(char, Expr, Span)>) -> Expr {
    if rest.is_empty() {
        first
    } else {
        Expr::Chain(Box::new(first), rest)
    }
}
