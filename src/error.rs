//! The crate's error type, as every stage above the IR names it. It is
//! defined in [`crate::ir::error`], the lowest layer, so that the IR's own
//! rules (`crate::ir::structural`) can return it too.

pub use crate::ir::error::*;
