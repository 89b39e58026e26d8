//! The crate's one error type, and [`ParseError`] (the front end's, here so
//! that [`Error`] can hold one without naming the front end). It lives in the
//! IR, the lowest layer, so that every stage can return it, the IR's own
//! rules included (`crate::ir::structural`); the crate root re-exports it as
//! `crate::error`.

use crate::ir::shape::ShapeError;
use std::fmt;

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

/// Everything that can go wrong, each naming what it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mistake in a program's text (file, line, column, caret).
    #[error("{0}")]
    Parse(Box<ParseError>),
    /// Operands whose shapes do not fit an op.
    #[error("{0}")]
    Shape(#[from] ShapeError),
    /// A file that cannot be read or written.
    #[error("{0}")]
    Io(String),
    /// Bad values given to the interpreter (missing, unknown or ill-shaped names).
    #[error("{0}")]
    Values(String),
    /// A value that is not finite, with the op that produced it.
    #[error("{op} produced a non-finite value ({value}) in a value of shape {shape}")]
    NotFinite {
        /// The op.
        op: String,
        /// The offending value.
        value: f64,
        /// The shape of the op's result.
        shape: String,
    },
    /// A request that the program cannot satisfy (e.g. `--grad` of a vector output).
    #[error("{0}")]
    Unsupported(String),
    /// A rewrite made two classes of different shapes equal, or built an
    /// ill-shaped node: some rule is unsound.
    #[error("a rule is unsound: {0}")]
    UnsoundRule(String),
    /// A malformed rule file: names the file, line and rule.
    #[error("{file}:{line}: rule {rule}: {message}")]
    Rule {
        /// The rule file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The rule's name (or `?` before the name is read).
        rule: String,
        /// What is wrong.
        message: String,
    },
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::Parse(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
