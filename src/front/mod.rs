//! The front end: the `.graph` language. Source text is lexed (`lex`), parsed
//! into statements (`syntax`) and elaborated into a [`crate::Program`]
//! (`elaborate`: names, `fn` inlining, shapes, CSE). Every mistake is a
//! [`ParseError`] naming the file, line and column (`source`). Programs can
//! also be built from Rust, op by op ([`builder`]), and print as the language.

pub mod builder;
mod elaborate;
mod lex;
mod source;
mod syntax;

pub use builder::ProgramBuilder;
pub use elaborate::parse_program;
pub use source::{parse_file, ParseError, MAX_CALL_DEPTH, MAX_NESTING, MAX_NODES};
