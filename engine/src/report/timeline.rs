//! A Gantt-like timeline as inline SVG: one bar per stage from its start for its
//! duration, coloured by status, under a time axis.

use std::time::Duration;

use super::html::esc;
use super::{colours, CHAR_W, SVG_FONT};
use crate::duration::fmt_duration;
use crate::record::{RunRecord, StageStatus};

const PLOT_W: f64 = 640.0;
const AXIS_H: f64 = 26.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
/// Room right of the plot for the label after a bar that ends the run.
const RIGHT: f64 = 120.0;
/// At most this many intervals on the time axis.
const MAX_TICKS: u64 = 8;

pub fn svg(record: &RunRecord) -> String {
    if record.stages.is_empty() {
        return "<p>The run has no stages.</p>\n".to_string();
    }
    // Stable sort: stages that start together keep the file's order.
    let mut rows: Vec<_> = record.stages.iter().collect();
    rows.sort_by_key(|(_, s)| s.start_ms);
    let end = rows
        .iter()
        .map(|(_, s)| s.start_ms.saturating_add(s.duration_ms))
        .chain([record.duration_ms, 1])
        .max()
        .unwrap_or(1);
    let label_w = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0) as f64
        * CHAR_W
        + 16.0;
    let x_of = |ms: u64| label_w + ms as f64 * PLOT_W / end as f64;
    let width = label_w + PLOT_W + RIGHT;
    let height = AXIS_H + rows.len() as f64 * ROW_H + 6.0;

    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"timeline\" {SVG_FONT}>\n"
    );
    let step = tick_step(end);
    for t in (0..=end / step).map(|k| k * step) {
        let x = x_of(t);
        out.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{height:.1}\" stroke=\"#e1e4e8\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>\n",
            AXIS_H - 6.0,
            AXIS_H - 10.0,
            fmt_duration(Duration::from_millis(t))
        ));
    }
    for (row, (name, s)) in rows.iter().enumerate() {
        let y = AXIS_H + row as f64 * ROW_H;
        let text_y = y + ROW_H / 2.0 + 4.0;
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{text_y:.1}\" text-anchor=\"end\">{}</text>\n",
            label_w - 8.0,
            esc(name)
        ));
        if s.status == StageStatus::Skipped {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{text_y:.1}\" fill=\"#8c8c8c\">skipped</text>\n",
                label_w + 4.0
            ));
            continue;
        }
        let (fill, stroke) = colours(s.status);
        let x = x_of(s.start_ms);
        // A cached stage can take no measurable time; it still gets a visible mark.
        let w = (x_of(s.start_ms.saturating_add(s.duration_ms)) - x).max(2.0);
        let time = s.time_label();
        out.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BAR_H}\" rx=\"2\" \
             fill=\"{fill}\" stroke=\"{stroke}\"><title>{}: {}, from {} for {time}</title></rect>\
             <text x=\"{:.1}\" y=\"{text_y:.1}\" fill=\"#57606a\">{time} {}</text>\n",
            y + (ROW_H - BAR_H) / 2.0,
            esc(name),
            s.status.label(),
            fmt_duration(Duration::from_millis(s.start_ms)),
            x + w + 5.0,
            s.status.label()
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// The smallest 1-2-5 step (in ms) that spans `end_ms` in at most [`MAX_TICKS`] intervals.
fn tick_step(end_ms: u64) -> u64 {
    let mut magnitude = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = magnitude.saturating_mul(m);
            if step.saturating_mul(MAX_TICKS) >= end_ms {
                return step;
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{record, stage};

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(8), 1);
        assert_eq!(tick_step(9), 2);
        assert_eq!(tick_step(4_000), 500);
        assert_eq!(tick_step(95_000), 20_000);
        assert_eq!(tick_step(u64::MAX), 5_000_000_000_000_000_000);
    }

    #[test]
    fn bars_are_placed_by_start_and_duration_and_skipped_stages_have_none() {
        let r = record(vec![
            ("late", stage("command", StageStatus::Ran, 2_000, 2_000)),
            ("early", stage("command", StageStatus::Hit, 0, 0)),
            ("never", stage("command", StageStatus::Skipped, 0, 0)),
        ]);
        let svg = svg(&r);
        let label_w = 5.0 * CHAR_W + 16.0;
        // `late` covers the second half of the 4 s run.
        assert!(svg.contains(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\"",
            label_w + PLOT_W / 2.0,
            AXIS_H + 2.0 * ROW_H + (ROW_H - BAR_H) / 2.0,
            PLOT_W / 2.0
        )));
        assert!(
            svg.contains("width=\"2.0\""),
            "a zero-length bar stays visible"
        );
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(">skipped</text>"));
        assert!(
            svg.contains(">4.0s</text>"),
            "the axis reaches the end of the run"
        );
        assert!(svg.contains("<title>late: ran, from 2.0s for 2.0s</title>"));
    }
}
