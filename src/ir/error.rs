//! The crate's one error type, and [`ParseError`] (the front end's, here so
//! that [`Error`] can hold one without naming the front end). It lives in the
//! IR, the lowest layer, so that every stage can return it, the IR's own
//! rules included (`crate::ir::structural`); the crate root re-exports it as
//! `crate::error`.

use crate::ir::shape::{Shape, ShapeError};
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
    /// The shape error it reports, when it is one (op, shapes, axis: the data
    /// behind the message).
    pub shape: Option<Box<ShapeError>>,
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
    /// A size or count past a limit: the limit, and the sentence saying what
    /// was asked (sizes past it are refused up front).
    #[error("{message}")]
    Limit {
        /// The limit.
        limit: u64,
        /// What was asked, and the limit, as a sentence.
        message: String,
    },
    /// A program that has no ONNX form here: the op (or output) refused, the
    /// element type when only that type is refused, and why.
    #[error("{reason}")]
    ExportUnsupported {
        /// The op or output refused, as printed.
        op: String,
        /// The element type refused (`f64`), when the other one exports.
        dtype: Option<&'static str>,
        /// Why, as a sentence naming the op.
        reason: String,
    },
    /// A rewrite made two classes of different shapes equal, or built an
    /// ill-shaped node: some rule is unsound.
    #[error("a rule is unsound: {0}")]
    UnsoundRule(Conflict),
    /// A bug in batchgraph: an invariant that should hold did not.
    #[error("internal error (a bug in batchgraph; please report it): {0}")]
    Internal(String),
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

/// What an unsound rule did to the e-graph.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Conflict {
    /// It merged two classes whose values have different shapes.
    #[error("unsound rewrite: merged a class of shape {left} with one of shape {right}")]
    Merged {
        /// One class's shape.
        left: Shape,
        /// The other's.
        right: Shape,
    },
    /// It built a node whose operands do not fit its op.
    #[error("{0}")]
    IllShaped(ShapeError),
    /// It built a variable the program does not declare.
    #[error("unknown variable {name}")]
    UnknownVariable {
        /// The variable.
        name: String,
    },
    /// The soundness checker ran it and it failed (names the rule and the instance).
    #[error("{0}")]
    Checked(String),
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::Parse(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
