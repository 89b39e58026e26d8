//! Line charts as SVG (plotters, pure Rust): the pictures of measurements.

use plotters::prelude::*;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
    /// Joined by a line (else dots only: a scatter plot).
    pub line: bool,
}

/// A chart: title, axis labels, and whether each axis is logarithmic.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// x axis label.
    pub x_label: String,
    /// y axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
}

const COLORS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];

fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-12);
        (lo - pad, hi + pad)
    }
}

/// Draws `series` as an SVG document.
pub fn line_chart_svg(chart: &Chart, series: &[Series]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let xs = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), chart.log_x);
        let ys = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), chart.log_y);
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&chart.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        macro_rules! draw {
            ($ctx:expr) => {{
                let mut ctx = $ctx;
                ctx.configure_mesh()
                    .x_desc(chart.x_label.as_str())
                    .y_desc(chart.y_label.as_str())
                    .draw()
                    .map_err(|e| e.to_string())?;
                for (i, s) in series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    if s.line {
                        ctx.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                            .map_err(|e| e.to_string())?
                            .label(s.label.as_str())
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                    }
                    if s.points.len() <= 40 || !s.line {
                        let dots = ctx
                            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                            .map_err(|e| e.to_string())?;
                        if !s.line {
                            dots.label(s.label.as_str())
                                .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.filled()));
                        }
                    }
                }
                ctx.configure_series_labels()
                    .border_style(BLACK)
                    .background_style(WHITE.mix(0.8))
                    .draw()
                    .map_err(|e| e.to_string())?;
            }};
        }
        match (chart.log_x, chart.log_y) {
            (true, true) => draw!(builder
                .build_cartesian_2d((xs.0..xs.1).log_scale(), (ys.0..ys.1).log_scale())
                .map_err(|e| e.to_string())?),
            (true, false) => draw!(builder
                .build_cartesian_2d((xs.0..xs.1).log_scale(), ys.0..ys.1)
                .map_err(|e| e.to_string())?),
            (false, true) => draw!(builder
                .build_cartesian_2d(xs.0..xs.1, (ys.0..ys.1).log_scale())
                .map_err(|e| e.to_string())?),
            (false, false) => draw!(builder
                .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)
                .map_err(|e| e.to_string())?),
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
