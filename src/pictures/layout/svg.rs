//! Drawing a [`Layout`] as an SVG document.

use super::text::{clip, clip_node, DETAIL_SIZE, GROUP_SIZE, LABEL_SIZE, MAX_GROUP_CHARS, MAX_LABEL_CHARS, TITLE_SIZE};
use super::{Layout, NodeStyle, Picture, Rect};
use std::fmt::Write;

const FONT: &str = "Helvetica, Arial, 'DejaVu Sans', sans-serif";
const EDGE_COLOR: &str = "#5a5a5a";

/// A number as written: at most one decimal, never `-0`.
struct Num(f64);

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0 * 10.0).round() as i64;
        let sign = if tenths < 0 { "-" } else { "" };
        let (whole, frac) = (tenths.abs() / 10, tenths.abs() % 10);
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            write!(f, "{sign}{whole}.{frac}")
        }
    }
}

/// Text with XML's special characters escaped.
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c if c.is_control() => f.write_char(' ')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Fill, stroke and corner radius of a node style.
fn look(style: NodeStyle, rect: &Rect) -> (&'static str, &'static str, f64) {
    match style {
        NodeStyle::Input => ("#add8e6", "#3f7d99", 3.0),
        NodeStyle::Param => ("#ffb347", "#b86e00", 3.0),
        NodeStyle::Constant => ("#e3e3e3", "#8a8a8a", rect.height / 2.0),
        NodeStyle::Op => ("#ffffff", "#444444", 8.0),
        NodeStyle::Output => ("#98fb98", "#2e8b57", 5.0),
    }
}

/// The SVG document for a picture and its layout.
pub(crate) fn write(picture: &Picture, layout: &Layout) -> String {
    let mut out = String::with_capacity(512 + 400 * (layout.nodes.len() + layout.edges.len()));
    let (w, h) = (Num(layout.width), Num(layout.height));
    // Writing to a String cannot fail.
    let _ = write_all(&mut out, picture, layout, w, h);
    out
}

fn write_all(out: &mut String, picture: &Picture, layout: &Layout, w: Num, h: Num) -> std::fmt::Result {
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}">"#
    )?;
    writeln!(
        out,
        r#"<defs><marker id="bg-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{EDGE_COLOR}"/></marker></defs>"#
    )?;
    writeln!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##)?;

    for (k, rect) in layout.groups.iter().enumerate() {
        let Some(r) = rect else { continue };
        writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"10\" fill=\"#f5f7fc\" stroke=\"#7b86a6\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>",
            Num(r.x),
            Num(r.y),
            Num(r.width),
            Num(r.height)
        )?;
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"{}\" font-style=\"italic\" fill=\"#4a5578\">{}</text>",
            Num(r.right() - 10.0),
            Num(r.y + 16.0),
            Num(GROUP_SIZE),
            Esc(&clip(&picture.groups[k].label, MAX_GROUP_CHARS))
        )?;
    }

    for route in &layout.edges {
        let Some(first) = route.curves.first() else { continue };
        write!(out, "<path d=\"M{},{}", Num(first.from.x), Num(first.from.y))?;
        for c in &route.curves {
            write!(
                out,
                " C{},{} {},{} {},{}",
                Num(c.c1.x),
                Num(c.c1.y),
                Num(c.c2.x),
                Num(c.c2.y),
                Num(c.to.x),
                Num(c.to.y)
            )?;
        }
        writeln!(
            out,
            "\" fill=\"none\" stroke=\"{EDGE_COLOR}\" stroke-width=\"1.3\" marker-end=\"url(#bg-arrow)\"/>"
        )?;
    }

    for (node, place) in picture.nodes.iter().zip(&layout.nodes) {
        let r = &place.rect;
        let (fill, stroke, radius) = look(node.style, r);
        let title = clip_node(&node.title);
        let detail = clip_node(&node.detail);
        write!(out, "<g><title>{}", Esc(&title))?;
        if !detail.is_empty() {
            write!(out, " {}", Esc(&detail))?;
        }
        writeln!(out, "</title>")?;
        writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.2\"/>",
            Num(r.x),
            Num(r.y),
            Num(r.width),
            Num(r.height),
            Num(radius)
        )?;
        if node.style == NodeStyle::Output {
            writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"0.8\"/>",
                Num(r.x + 3.0),
                Num(r.y + 3.0),
                Num(r.width - 6.0),
                Num(r.height - 6.0),
                Num(radius - 2.0)
            )?;
        }
        let cx = Num(r.center_x());
        let title_y = if detail.is_empty() {
            r.center_y() + TITLE_SIZE * 0.35
        } else {
            r.y + 17.0
        };
        writeln!(
            out,
            "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\" font-weight=\"bold\" fill=\"#1a1a1a\">{}</text>",
            Num(title_y),
            Num(TITLE_SIZE),
            Esc(&title)
        )?;
        if !detail.is_empty() {
            writeln!(
                out,
                "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\" fill=\"#4d4d4d\">{}</text>",
                Num(r.y + 32.0),
                Num(DETAIL_SIZE),
                Esc(&detail)
            )?;
        }
        writeln!(out, "</g>")?;
    }

    for (edge, route) in picture.edges.iter().zip(&layout.edges) {
        let (Some(place), Some(text)) = (route.label, &edge.label) else {
            continue;
        };
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\" font-weight=\"bold\" fill=\"#3b3b3b\" stroke=\"#ffffff\" stroke-width=\"4\" paint-order=\"stroke\">{}</text>",
            Num(place.at.x),
            Num(place.at.y),
            Num(LABEL_SIZE),
            Esc(&clip(text, MAX_LABEL_CHARS))
        )?;
    }
    writeln!(out, "</svg>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_never_negative_zero() {
        assert_eq!(Num(1.0).to_string(), "1");
        assert_eq!(Num(-0.01).to_string(), "0");
        assert_eq!(Num(-2.25).to_string(), "-2.3");
        assert_eq!(Num(12.34).to_string(), "12.3");
    }

    #[test]
    fn escapes() {
        assert_eq!(Esc("a<b & \"c\"").to_string(), "a&lt;b &amp; &quot;c&quot;");
    }
}
