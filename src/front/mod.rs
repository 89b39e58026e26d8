//! The front end: the `.graph` language. Source text is lexed (`lex`), parsed
//! into statements (`syntax`) and elaborated into a [`crate::Program`]
//! (`elaborate`: names, `fn` inlining, shapes, CSE). Every mistake is a
//! [`ParseError`] naming the file, line and column (`source`).

mod elaborate;
mod lex;
mod source;
mod syntax;

pub use elaborate::parse_program;
pub use source::{parse_file, ParseError, MAX_CALL_DEPTH, MAX_NESTING, MAX_NODES};
