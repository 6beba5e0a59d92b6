//! The loss chart people read: its legend never covers a line. The legend is drawn
//! last, over a box 80 % white, so a line beneath it would show through as a tint;
//! inside the box, beside the legend's own colour samples, only the label text (grey
//! levels) may appear.

use soma_flow_stages::training::curve::plot_loss;

/// A loss that falls fast and then holds mid-chart (its cross-entropy well below), and
/// a few held-out scores, as training writes them: the line runs along the middle
/// right, where a legend placed there would cover it.
fn metrics() -> Vec<serde_json::Value> {
    (0..=100)
        .map(|step| {
            let loss = 1.75 + 1.25 * (-(step as f64) / 10.0).exp();
            let mut line = serde_json::json!({ "step": step, "loss": loss, "ce": loss - 1.25 });
            if step % 25 == 0 {
                line["holdout_score"] = serde_json::json!(loss + 0.1);
            }
            line
        })
        .collect()
}

#[test]
fn the_loss_chart_legend_covers_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curve");
    plot_loss(&metrics(), "train: loss per step", "loss", &path).unwrap();
    let image = image::load_from_memory(&std::fs::read(&path).unwrap())
        .unwrap()
        .to_rgb8();
    let black = |x: u32, y: u32| image.get_pixel(x, y).0.iter().all(|&c| c < 40);
    // The legend's border: the longest run of black pixels in a row of the upper half
    // (the axes are on the left and at the bottom; the caption is text).
    let (width, height) = image.dimensions();
    let mut border: Option<(u32, u32, u32)> = None; // (row, first, last)
    for y in 0..height / 2 {
        let mut x = 0;
        while x < width {
            let start = x;
            while x < width && black(x, y) {
                x += 1;
            }
            let len = x - start;
            if len >= 80 && border.is_none_or(|(_, a, b)| len > b - a + 1) {
                border = Some((y, start, x - 1));
            }
            x += 1;
        }
    }
    let (top, left, right) = border.expect("a legend box in the upper half");
    assert!(
        left > width / 2,
        "the legend sits on the right: {left}..{right}"
    );
    let bottom = (top + 1..height)
        .find(|&y| (left..=right).all(|x| black(x, y)))
        .expect("the legend box's lower edge");
    // Beside the colour samples (the box's first 40 px), only grey text on white.
    let mut tinted = 0;
    for y in top + 1..bottom {
        for x in left + 40..right {
            let [r, g, b] = image.get_pixel(x, y).0;
            let spread = r.max(g).max(b) - r.min(g).min(b);
            if spread > 24 {
                tinted += 1;
            }
        }
    }
    assert_eq!(
        tinted, 0,
        "a line shows through the legend box at rows {top}..{bottom}"
    );
}
