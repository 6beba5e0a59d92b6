//! Tables in stage notes. A kind writes a table as a Markdown pipe table ([`pipe`]):
//! padded, it reads well in the terminal's run summary, and `report` draws it as an
//! HTML table ([`to_html`]). Any other note stays preformatted text.

use std::fmt::Write;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown pipe table with its columns padded to their widest cell.
pub fn pipe(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| cell(c).chars().count())
                .chain([name.chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut out = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let (w, align) = (widths[i], columns[i].1);
            let pad = w.saturating_sub(c.chars().count());
            let _ = match align {
                Align::Left => write!(out, " {c}{} |", " ".repeat(pad)),
                Align::Right => write!(out, " {}{c} |", " ".repeat(pad)),
            };
        }
        out
    };
    let mut out = line(columns.iter().map(|(n, _)| cell(n)).collect());
    out.push('\n');
    out.push_str(&line(
        columns
            .iter()
            .zip(&widths)
            .map(|((_, align), w)| match align {
                Align::Left => "-".repeat(*w),
                Align::Right => format!("{}:", "-".repeat(w - 1)),
            })
            .collect(),
    ));
    for row in rows {
        out.push('\n');
        let cells = (0..columns.len())
            .map(|i| cell(row.get(i).map_or("", String::as_str)))
            .collect();
        out.push_str(&line(cells));
    }
    out
}

/// The HTML table of a note that is a pipe table (a header row, a `---` row, then
/// rows; every line between pipes), or `None`. Cells are escaped with `esc`.
pub fn to_html(note: &str, esc: impl Fn(&str) -> String) -> Option<String> {
    let lines: Vec<&str> = note.lines().map(str::trim).collect();
    if lines.len() < 2
        || !lines
            .iter()
            .all(|l| l.len() >= 2 && l.starts_with('|') && l.ends_with('|'))
    {
        return None;
    }
    let split = |l: &str| -> Vec<String> {
        let inner = &l[1..l.len() - 1];
        let mut cells = vec![String::new()];
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    cells.last_mut().expect("one cell").push('|');
                    chars.next();
                }
                '|' => cells.push(String::new()),
                _ => cells.last_mut().expect("one cell").push(c),
            }
        }
        cells.into_iter().map(|c| c.trim().to_string()).collect()
    };
    let rule = split(lines[1]);
    if !rule
        .iter()
        .all(|c| !c.is_empty() && c.trim_matches(':').chars().all(|ch| ch == '-'))
    {
        return None;
    }
    let right: Vec<bool> = rule.iter().map(|c| c.ends_with(':')).collect();
    let row = |tag: &str, cells: Vec<String>| {
        let mut out = String::from("<tr>");
        for (i, c) in cells.iter().enumerate() {
            let style = if right.get(i) == Some(&true) {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<{tag}{style}>{}</{tag}>", esc(c));
        }
        out + "</tr>\n"
    };
    let mut html = String::from("<table class=\"note\">\n");
    html.push_str(&row("th", split(lines[0])));
    for l in &lines[2..] {
        html.push_str(&row("td", split(l)));
    }
    html.push_str("</table>\n");
    Some(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_table_round_trips_into_html_and_other_notes_do_not() {
        let text = pipe(
            &[("model", Align::Left), ("loss", Align::Right)],
            &[
                vec!["mine | new".into(), "2.5".into()],
                vec!["<b>".into(), "10.25".into()],
            ],
        );
        assert_eq!(
            text,
            "| model       |  loss |\n| ----------- | ----: |\n| mine \\| new |   2.5 |\n| <b>         | 10.25 |"
        );
        let html = to_html(&text, |s| s.replace('<', "&lt;")).unwrap();
        assert!(
            html.contains("<th>model</th><th class=\"num\">loss</th>"),
            "{html}"
        );
        assert!(
            html.contains("<td>mine | new</td><td class=\"num\">2.5</td>"),
            "{html}"
        );
        assert!(html.contains("<td>&lt;b></td>"), "{html}");
        assert_eq!(to_html("trained 30 steps", |s| s.into()), None);
        assert_eq!(to_html("| a |\n| b |", |s| s.into()), None, "no rule row");
    }
}
