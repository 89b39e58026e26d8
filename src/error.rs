//! The crate's one error type.

use crate::front::ParseError;
use crate::ir::ShapeError;

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
