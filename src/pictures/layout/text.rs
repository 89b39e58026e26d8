//! Text: clipping, width estimates and node sizes, shared by layout and SVG.

use super::{NodeStyle, PictureNode};
use std::borrow::Cow;

/// Font size of a node's title.
pub(crate) const TITLE_SIZE: f64 = 13.0;
/// Font size of a node's detail line.
pub(crate) const DETAIL_SIZE: f64 = 11.0;
/// Font size of edge and group labels.
pub(crate) const LABEL_SIZE: f64 = 10.0;
/// Font size of group labels.
pub(crate) const GROUP_SIZE: f64 = 12.0;

/// Longest text drawn in a node; longer text is cut with an ellipsis so a
/// huge title cannot make a huge drawing.
const MAX_CHARS: usize = 48;
/// Longest group label drawn.
pub(crate) const MAX_GROUP_CHARS: usize = 40;
/// Longest edge label drawn.
pub(crate) const MAX_LABEL_CHARS: usize = 16;

/// Horizontal padding inside a node.
const PAD_X: f64 = 10.0;
/// Narrowest node.
const MIN_WIDTH: f64 = 40.0;
/// Height of a node with a detail line.
const TALL: f64 = 40.0;
/// Height of a node without one.
const SHORT: f64 = 28.0;

/// The text as drawn: at most `max` characters (an ellipsis marks a cut),
/// line breaks and other control characters replaced by spaces.
pub(crate) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    let clean = !s.chars().any(char::is_control);
    let count = s.chars().count();
    if clean && count <= max {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(4 * max));
    for (i, c) in s.chars().enumerate() {
        if i + 1 == max && count > max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    Cow::Owned(out)
}

/// A node title as drawn.
pub(crate) fn clip_node(s: &str) -> Cow<'_, str> {
    clip(s, MAX_CHARS)
}

/// Rough advance of one character in em, for common sans-serif fonts
/// (DejaVu Sans, Helvetica, Arial); errs wide so text fits its box.
fn char_em(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | '`' => 0.30,
        ' ' | 'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '{' | '}' | 'I' | '-' => 0.40,
        'm' | 'w' | 'M' | 'W' | '@' | '%' => 0.95,
        'A'..='Z' => 0.72,
        '0'..='9' => 0.64,
        c if c.is_ascii() => 0.62,
        _ => 0.85,
    }
}

/// Estimated width in pixels of `s` at `size` px.
pub(crate) fn text_width(s: &str, size: f64, bold: bool) -> f64 {
    let em: f64 = s.chars().map(char_em).sum();
    em * size * if bold { 1.08 } else { 1.0 }
}

/// Width and height of a node's box.
pub(crate) fn node_size(node: &PictureNode) -> (f64, f64) {
    let title = text_width(&clip_node(&node.title), TITLE_SIZE, true);
    let detail = text_width(&clip_node(&node.detail), DETAIL_SIZE, false);
    let mut width = (title.max(detail) + 2.0 * PAD_X).max(MIN_WIDTH);
    let height = if node.detail.is_empty() { SHORT } else { TALL };
    if node.style == NodeStyle::Constant || node.style == NodeStyle::Output {
        // Pill ends and the double border take some room.
        width += 8.0;
    }
    (width.ceil(), height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_and_cleans() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\nb", 5), "a b");
    }

    #[test]
    fn wider_text_is_wider() {
        assert!(text_width("sum axis 1", 13.0, true) > text_width("tanh", 13.0, true));
    }
}
