//! Limits that more than one stage enforces: the front end while it inlines
//! `fn`s, the transforms while they build a derived program. (The limits of
//! one value, [`MAX_RANK`](crate::ir::MAX_RANK) and
//! [`MAX_ELEMENTS`](crate::ir::MAX_ELEMENTS), are the shapes'.)

/// Most nodes a program may have after `fn` inlining, before CSE; also the
/// most a derived (`grad`, `jvp`) program may have.
pub const MAX_NODES: usize = 1_000_000;
