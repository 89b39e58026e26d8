//! The lexer: text to tokens, each with its position.

use crate::front::source::{ParseError, Source, Span};
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Token {
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

pub(crate) fn lex(src: &Source, text: &str) -> Result<Vec<(Token, Span)>, ParseError> {
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
                // A character that prints as nothing (or as something else) is also named by its code point.
                let code = match c.is_ascii_graphic() {
                    true => String::new(),
                    false => format!(" (U+{:04X})", u32::from(c)),
                };
                return Err(src.error(span, format!("unexpected character `{c}`{code}")));
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
