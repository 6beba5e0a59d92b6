//! A line chart as inline SVG: one line per labelled series on shared axes, with the
//! axes' ranges written at their ends and a legend below.

use super::html::esc;
use super::SVG_FONT;

const W: f64 = 640.0;
const PLOT_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const AXIS: f64 = 26.0;
const LEGEND_ROW: f64 = 18.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The chart of `series` (label, points); points that are not finite are left out.
pub fn svg(series: &[(&str, &[(f64, f64)])]) -> String {
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let all = || series.iter().flat_map(|(_, p)| p.iter().filter(finite));
    let range = |values: Vec<f64>| {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, if hi > lo { hi } else { lo + 1.0 })
    };
    if all().next().is_none() {
        return "<p>No points to draw.</p>\n".to_string();
    }
    let (x0, x1) = range(all().map(|p| p.0).collect());
    let (y0, y1) = range(all().map(|p| p.1).collect());
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| TOP + (y1 - y) / (y1 - y0) * PLOT_H;
    let bottom = TOP + PLOT_H;
    let height = bottom + AXIS + LEGEND_ROW * series.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" \
         viewBox=\"0 0 {W} {height}\" {SVG_FONT}>\n\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{PLOT_H}\" fill=\"none\" stroke=\"#d0d7de\"/>\n",
        W - LEFT - RIGHT
    );
    let label = |x: f64, y: f64, anchor: &str, text: String| {
        format!(
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" fill=\"#57606a\">{}</text>\n",
            esc(&text)
        )
    };
    out += &label(LEFT - 6.0, TOP + 10.0, "end", number(y1));
    out += &label(LEFT - 6.0, bottom, "end", number(y0));
    out += &label(LEFT, bottom + 16.0, "start", number(x0));
    out += &label(W - RIGHT, bottom + 16.0, "end", number(x1));
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = points
            .iter()
            .filter(finite)
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        out += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\n",
            path.join(" ")
        );
        let y = bottom + AXIS + LEGEND_ROW * i as f64 + 12.0;
        out += &format!(
            "<line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\n",
            y - 4.0,
            LEFT + 18.0,
            y - 4.0
        );
        out += &format!(
            "<text x=\"{}\" y=\"{y:.1}\">{}</text>\n",
            LEFT + 24.0,
            esc(name)
        );
    }
    out + "</svg>\n"
}

/// An axis end: integers as they are, other values to 4 decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}
