//! The loss curve as a PNG. CI machines have no system fonts, so the labels
//! use a small DejaVu Sans subset embedded in the binary.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, ensure, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-ascii.ttf");
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the embedded font under [`FAMILY`], once per process.
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType file"));
    });
}

/// The `(step, value)` pairs of `key` in the metric lines that have it.
pub fn series(metrics: &[serde_json::Value], key: &str) -> Vec<(f64, f64)> {
    metrics
        .iter()
        .filter_map(|m| Some((m.get("step")?.as_f64()?, m.get(key)?.as_f64()?)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// Plots the `loss` (labelled `label`), `ce` and `holdout_score` (when present) of each
/// step into a PNG at `path`, whatever its extension (stage outputs have none).
pub fn plot_loss(
    metrics: &[serde_json::Value],
    title: &str,
    label: &str,
    path: &Path,
) -> Result<()> {
    // The encoder picks the format from the extension.
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("curve");
    let png = path.with_file_name(format!("{name}.tmp.png"));
    draw_loss(metrics, title, label, &png)?;
    std::fs::rename(&png, path)?;
    Ok(())
}

fn draw_loss(metrics: &[serde_json::Value], title: &str, label: &str, path: &Path) -> Result<()> {
    register_font();
    let loss = series(metrics, "loss");
    ensure!(!loss.is_empty(), "no loss values to plot");
    let ce = series(metrics, "ce");
    let holdout = series(metrics, "holdout_score");
    let values = loss.iter().chain(&ce).chain(&holdout).map(|(_, v)| *v);
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let pad = ((high - low) * 0.05).max(1e-6);
    // Headroom above the curves for the legend (upper right, where a falling loss is
    // low): it never covers a line.
    let headroom = (high - low).max(1e-6) * 0.35;
    let last = loss.last().map_or(1.0, |(s, _)| *s).max(1.0);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Debug| anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..last, (low - pad)..(high + pad + headroom))
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(|e| draw(&e))?;
    let mut lines = vec![(label, loss, BLUE)];
    if !ce.is_empty() {
        lines.push(("cross-entropy", ce, RED));
    }
    if !holdout.is_empty() {
        chart
            .draw_series(holdout.iter().map(|p| Circle::new(*p, 4, GREEN.filled())))
            .map_err(|e| draw(&e))?;
        lines.push(("held-out on-chain score", holdout, GREEN));
    }
    for (label, points, colour) in lines {
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}
