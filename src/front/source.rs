//! Where a program's text comes from and how a mistake in it is reported
//! ([`ParseError`], which is the crate's `error` module's so that
//! [`crate::Error`] can hold one, names the file, line and column and shows
//! the line with a caret). Also the front end's limits, and reading a
//! `.graph` file.

use crate::error::Error;
pub use crate::error::ParseError;
use crate::front::elaborate::parse_program;
pub use crate::ir::MAX_NODES;
use crate::ir::{Program, ShapeError};

/// Deepest expression nesting the parser accepts (guards the stack).
pub const MAX_NESTING: usize = 128;
/// Deepest chain of `fn` calls inside `fn` calls.
pub const MAX_CALL_DEPTH: usize = 32;

/// A position in the source: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// A program's text, by lines, with the name of its file.
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) lines: Vec<&'a str>,
}

impl Source<'_> {
    pub(crate) fn error(&self, at: Span, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line: at.line,
            column: at.column,
            source_line: self.lines.get(at.line - 1).unwrap_or(&"").to_string(),
            message: message.into(),
            shape: None,
        }
    }

    /// The error at `at` that reports the shape error `e`.
    pub(crate) fn shape_error(&self, at: Span, e: ShapeError) -> ParseError {
        ParseError {
            shape: Some(Box::new(e.clone())),
            ..self.error(at, e.to_string())
        }
    }
}

/// Reads and parses a `.graph` file; invalid UTF-8 is reported with its position.
pub fn parse_file(path: &std::path::Path) -> Result<Program, Error> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{file}: {e}")))?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let line = good.matches('\n').count() + 1;
            let line_text = good.rsplit('\n').next().unwrap_or("");
            return Err(Error::Parse(Box::new(ParseError {
                file,
                line,
                column: line_text.chars().count() + 1,
                source_line: line_text.to_string(),
                message: "invalid UTF-8: the file must be UTF-8 text".into(),
                shape: None,
            })));
        }
    };
    parse_program(&file, text).map_err(|e| Error::Parse(Box::new(e)))
}
