//! The stage graph as inline SVG: a stage sits one row below its deepest dependency,
//! boxes are coloured by status and arrows run from each dependency to its dependent.

use super::html::esc;
use super::{colours, CHAR_W, SVG_FONT};
use crate::dag::Edge;
use crate::record::RunRecord;

const BOX_H: f64 = 44.0;
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 52.0;
const MARGIN: f64 = 20.0;

pub fn svg(record: &RunRecord, edges: &[Edge]) -> String {
    if record.stages.is_empty() {
        return "<p>The run has no stages.</p>\n".to_string();
    }
    let links: Vec<(usize, usize, &Edge)> = edges
        .iter()
        .filter_map(|e| {
            Some((
                record.stages.get_index_of(&e.from)?,
                record.stages.get_index_of(&e.to)?,
                e,
            ))
        })
        .collect();
    let pairs: Vec<(usize, usize)> = links.iter().map(|&(a, b, _)| (a, b)).collect();
    let rows = rows(record.stages.len(), &pairs);

    let longest = record
        .stages
        .iter()
        .map(|(name, s)| name.chars().count().max(s.kind.chars().count()))
        .max()
        .unwrap_or(0);
    let layout = Layout::new(rows, record.stages.len(), longest);
    let (width, height, box_w) = (layout.width, layout.height, layout.box_w);

    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"stage graph\" {SVG_FONT}>\n\
         <defs><marker id=\"report-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#57606a\"/></marker></defs>\n"
    );
    for &(a, b, e) in &links {
        let (dash, what) = if e.label.is_empty() {
            (" stroke-dasharray=\"5 4\"", "needs".to_string())
        } else {
            ("", e.label.clone())
        };
        out.push_str(&format!(
            "<path d=\"{}\" fill=\"none\" stroke=\"#57606a\" stroke-width=\"1.4\"{dash} \
             marker-end=\"url(#report-arrow)\"><title>{} → {}: {}</title></path>\n",
            layout.route(a, b),
            esc(&e.from),
            esc(&e.to),
            esc(&what)
        ));
    }
    for (i, (name, s)) in record.stages.iter().enumerate() {
        let (x, y) = layout.at[i];
        let (fill, stroke) = colours(s.status);
        let cx = x + box_w / 2.0;
        out.push_str(&format!(
            "<g><title>{name} ({kind}): {status}</title>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{box_w:.1}\" height=\"{BOX_H}\" rx=\"6\" \
             fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"/>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{name}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">{kind}</text></g>\n",
            y + 18.0,
            y + 34.0,
            name = esc(name),
            kind = esc(&s.kind),
            status = s.status.label(),
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// Where the boxes go: rows centred under each other, each box as wide as the longest
/// name or kind.
struct Layout {
    box_w: f64,
    width: f64,
    height: f64,
    rows: Vec<Vec<usize>>,
    row_of: Vec<usize>,
    /// Top-left corner of each stage's box.
    at: Vec<(f64, f64)>,
}

impl Layout {
    fn new(rows: Vec<Vec<usize>>, n: usize, longest_label: usize) -> Self {
        let box_w = (longest_label as f64 * CHAR_W + 20.0).max(100.0);
        let widest = rows.iter().map(Vec::len).max().unwrap_or(1) as f64;
        let width = 2.0 * MARGIN + widest * (box_w + GAP_X) - GAP_X;
        let height = 2.0 * MARGIN + rows.len() as f64 * (BOX_H + GAP_Y) - GAP_Y;
        let mut layout = Layout {
            box_w,
            width,
            height,
            row_of: vec![0; n],
            at: vec![(0.0, 0.0); n],
            rows: Vec::new(),
        };
        for (r, row) in rows.iter().enumerate() {
            let x0 = layout.row_x0(row.len());
            for (k, &i) in row.iter().enumerate() {
                layout.row_of[i] = r;
                layout.at[i] = (x0 + k as f64 * (box_w + GAP_X), Self::row_y(r));
            }
        }
        layout.rows = rows;
        layout
    }

    fn row_y(r: usize) -> f64 {
        MARGIN + r as f64 * (BOX_H + GAP_Y)
    }

    fn row_x0(&self, len: usize) -> f64 {
        (self.width - (len as f64 * (self.box_w + GAP_X) - GAP_X)) / 2.0
    }

    /// The SVG path of the arrow from `a` to `b`. An arrow that crosses rows passes
    /// each through the gap between boxes nearest its straight course: drawn behind a
    /// box, it would look like an arrow of the stage in front.
    fn route(&self, a: usize, b: usize) -> String {
        let (x1, y1) = (self.at[a].0 + self.box_w / 2.0, self.at[a].1 + BOX_H);
        let (x2, y2) = (self.at[b].0 + self.box_w / 2.0, self.at[b].1);
        let mut points = vec![(x1, y1)];
        for r in self.row_of[a] + 1..self.row_of[b] {
            let (top, bottom) = (Self::row_y(r), Self::row_y(r) + BOX_H);
            let straight = x1 + (x2 - x1) * ((top + bottom) / 2.0 - y1) / (y2 - y1);
            let x0 = self.row_x0(self.rows[r].len());
            let gap = (0..=self.rows[r].len())
                .map(|k| x0 - GAP_X / 2.0 + k as f64 * (self.box_w + GAP_X))
                .min_by(|g, h| (g - straight).abs().total_cmp(&(h - straight).abs()))
                .expect("a row has at least one gap");
            points.extend([(gap, top), (gap, bottom)]);
        }
        points.push((x2, y2));
        let mut d = format!("M{x1:.1},{y1:.1}");
        // Vertical tangents at every point: the arrow leaves and enters boxes, and
        // passes gaps, straight down.
        for w in points.windows(2) {
            let ((ax, ay), (bx, by)) = (w[0], w[1]);
            let mid = (ay + by) / 2.0;
            d.push_str(&format!(
                " C{ax:.1},{mid:.1} {bx:.1},{mid:.1} {bx:.1},{by:.1}"
            ));
        }
        d
    }
}

/// Stage indices per row. A stage's row is the length of the longest dependency chain
/// above it; within a row stages sit under the mean position of their dependencies,
/// which untangles most crossings, declaration order breaking ties.
fn rows(n: usize, links: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut depth = vec![0usize; n];
    // n rounds settle any DAG; the bound only matters should the edges form a cycle.
    for _ in 0..n {
        let mut changed = false;
        for &(a, b) in links {
            if depth[b] <= depth[a] {
                depth[b] = depth[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows = vec![Vec::new(); depth.iter().max().map_or(0, |d| d + 1)];
    for (i, &d) in depth.iter().enumerate() {
        rows[d].push(i);
    }
    rows.retain(|r| !r.is_empty());

    // Horizontal centre of each placed stage, in box widths from the middle.
    let mut centre = vec![0.0f64; n];
    for row in &mut rows {
        let mean_dep = |i: usize| {
            let above: Vec<f64> = links
                .iter()
                .filter(|&&(a, b)| b == i && a != i)
                .map(|&(a, _)| centre[a])
                .collect();
            if above.is_empty() {
                0.0
            } else {
                above.iter().sum::<f64>() / above.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = row.iter().map(|&i| (mean_dep(i), i)).collect();
        keyed.sort_by(|x, y| x.0.total_cmp(&y.0));
        *row = keyed.into_iter().map(|(_, i)| i).collect();
        let half = (row.len() as f64 - 1.0) / 2.0;
        for (k, &i) in row.iter().enumerate() {
            centre[i] = k as f64 - half;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StageStatus;
    use crate::report::test_support::{record, stage};

    fn edge(from: &str, to: &str, label: &str) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
            label: label.into(),
        }
    }

    #[test]
    fn rows_follow_the_longest_chain_and_dependencies_pull_children_under_them() {
        // 0 → 2, 1 → 3, 0 → 4 → 5, 3 → 5: declaration order would cross 0→2 and 1→3.
        let rows = rows(6, &[(1, 3), (0, 2), (0, 4), (4, 5), (3, 5)]);
        assert_eq!(rows, [vec![0, 1], vec![2, 4, 3], vec![5]]);
        let crossed = super::rows(4, &[(0, 3), (1, 2)]);
        assert_eq!(crossed, [vec![0, 1], vec![3, 2]]);
    }

    #[test]
    fn an_arrow_across_rows_passes_beside_the_boxes_between() {
        // 0 → 1 → 2 and 0 → 2: straight down, 0 → 2 would hide behind box 1.
        let layout = Layout::new(rows(3, &[(0, 1), (1, 2), (0, 2)]), 3, 5);
        let (mid_x, mid_y) = layout.at[1];
        let beside = format!("{:.1},{mid_y:.1}", mid_x - GAP_X / 2.0);
        let below = format!("{:.1},{:.1}", mid_x - GAP_X / 2.0, mid_y + BOX_H);
        let long = layout.route(0, 2);
        assert!(long.contains(&beside) && long.contains(&below), "{long}");
        assert!(!layout.route(0, 1).contains(&beside));
    }

    #[test]
    fn a_cycle_cannot_hang_the_layout() {
        let rows = rows(2, &[(0, 1), (1, 0)]);
        assert_eq!(rows.iter().map(Vec::len).sum::<usize>(), 2);
    }

    #[test]
    fn boxes_carry_name_kind_and_status_colour_and_needs_are_dashed() {
        let r = record(vec![
            ("make", stage("command", StageStatus::Ran, 0, 5)),
            ("use", stage("train", StageStatus::Failed, 5, 5)),
            ("after", stage("command", StageStatus::Skipped, 0, 0)),
        ]);
        let svg = svg(
            &r,
            &[
                edge("make", "use", "text→src"),
                edge("use", "after", ""),
                edge("gone", "use", "x→y"),
            ],
        );
        assert!(svg.starts_with("<svg "));
        assert!(svg.contains(">make</text>") && svg.contains(">train</text>"));
        assert!(svg.contains(&format!("fill=\"{}\"", colours(StageStatus::Failed).0)));
        assert_eq!(
            svg.matches("marker-end=").count(),
            2,
            "edges to unknown stages are dropped"
        );
        assert!(svg.contains("<title>make → use: text→src</title>"));
        assert!(svg.contains("stroke-dasharray=\"5 4\" marker-end=\"url(#report-arrow)\"><title>use → after: needs</title>"));
    }
}
