//! `soma-flow report`: one self-contained HTML page about a recorded run (header, stage
//! graph, timeline, stage table, notes, PNG outputs), with the PNGs also copied beside
//! it so that they can be used on their own; or, with `--compare`, one page putting
//! runs side by side (their comparison table and each curve with a line per run).

mod chart;
mod graph;
mod html;
mod images;
mod timeline;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;

use crate::dag::Edge;
use crate::duration::fmt_duration;
use crate::record::{RunRecord, StageStatus};
use crate::store::Store;
use html::{esc, fmt_bytes};
use images::Images;

/// The dependencies between the run's stages, rebuilt from its pipeline text, or why
/// they could not be (the page is still written, with the graph's edges left out).
pub type Dependencies = std::result::Result<Vec<Edge>, String>;

/// SVG text is drawn in a monospace font so that box and column widths can be
/// computed from character counts.
const SVG_FONT: &str =
    r#"font-family="ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" font-size="12""#;
/// Width of one character of [`SVG_FONT`], slightly generous.
const CHAR_W: f64 = 7.4;

/// Characters of a hash or cache key shown; enough to tell runs apart at a glance.
const SHORT_HASH: usize = 12;

const ALL_STATUSES: [StageStatus; 6] = [
    StageStatus::Ran,
    StageStatus::Hit,
    StageStatus::Deferred,
    StageStatus::Failed,
    StageStatus::Skipped,
    StageStatus::Interrupted,
];

/// Fill and outline of a stage, shared by the legend, the graph and the timeline.
fn colours(status: StageStatus) -> (&'static str, &'static str) {
    match status {
        StageStatus::Ran => ("#c8ecd0", "#2e7d32"),
        StageStatus::Hit => ("#d6e6f7", "#3d6fa8"),
        StageStatus::Deferred => ("#fbe6a6", "#a36b00"),
        StageStatus::Failed => ("#f7c6c6", "#c62828"),
        StageStatus::Skipped => ("#ececec", "#8c8c8c"),
        StageStatus::Interrupted => ("#f3d3ea", "#8e2470"),
    }
}

/// Writes `index.html` and the PNG copies into `out` and gives the page's path.
pub fn write(
    store: &Store,
    record: &RunRecord,
    deps: &Dependencies,
    out: &Path,
) -> Result<PathBuf> {
    page_dir(out)?;
    let images = images::collect(store, record);
    for image in &images.found {
        let path = out.join(&image.file_name);
        // Written rather than copied: stored objects are read-only, and a read-only
        // copy would stop the next report into the same directory from replacing it.
        std::fs::write(&path, &image.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    write_index(out, render(record, deps, &images))
}

/// Makes `out` a directory for a page, refusing a file already there.
fn page_dir(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        anyhow::bail!(
            "{} exists and is not a directory; choose another --out",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

/// Writes `page` as `out/index.html` and gives its path.
fn write_index(out: &Path, page: String) -> Result<PathBuf> {
    let index = out.join("index.html");
    std::fs::write(&index, page).with_context(|| format!("cannot write {}", index.display()))?;
    Ok(index)
}

/// The start of a page titled `title`, up to its heading.
fn page_start(title: &str) -> String {
    let title = esc(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    )
}

/// One named curve of a comparison: per run (its label), its points.
pub type CurveLines = (String, Vec<(String, Vec<(f64, f64)>)>);

/// Writes `out/index.html` comparing runs: `table` (a pipe table: the params that
/// differ and the headline results) and one chart per curve, a line per run.
pub fn write_comparison(
    title: &str,
    table: &str,
    curves: &[CurveLines],
    problems: &[String],
    out: &Path,
) -> Result<PathBuf> {
    page_dir(out)?;
    let mut page = page_start(title);
    page.push_str("<h2>Runs side by side</h2>\n");
    match crate::table::to_html(table, esc) {
        Some(html) => page.push_str(&html),
        None => page.push_str(&format!("<pre>{}</pre>\n", esc(table))),
    }
    for problem in problems {
        page.push_str(&format!("<p class=\"warn\">{}</p>\n", esc(problem)));
    }
    page.push_str("<h2>Curves</h2>\n");
    if curves.is_empty() {
        page.push_str("<p>No stage of these runs has curves.</p>\n");
    }
    for (name, lines) in curves {
        page.push_str(&format!("<h3>{}</h3>\n", esc(name)));
        let series: Vec<(&str, &[(f64, f64)])> = lines
            .iter()
            .map(|(label, points)| (label.as_str(), points.as_slice()))
            .collect();
        page.push_str(&chart::svg(&series));
    }
    page.push_str("</body>\n</html>\n");
    write_index(out, page)
}

fn render(record: &RunRecord, deps: &Dependencies, images: &Images) -> String {
    let mut page = page_start(&format!("{}: run {}", record.name, record.id));
    page.push_str(&header(record));
    page.push_str("<h2>Stage graph</h2>\n");
    page.push_str(&legend());
    let edges = match deps {
        Ok(edges) => edges.as_slice(),
        Err(why) => {
            page.push_str(&format!(
                "<p class=\"warn\">The recorded pipeline could not be loaded again, so the \
                 graph shows no dependencies:</p>\n<pre>{}</pre>\n",
                esc(why)
            ));
            &[]
        }
    };
    page.push_str(&graph::svg(record, edges));
    page.push_str("<h2>Timeline</h2>\n");
    page.push_str(&timeline::svg(record));
    page.push_str("<h2>Stages</h2>\n");
    page.push_str(&stage_table(record));
    page.push_str("<h2>Notes</h2>\n");
    page.push_str(&notes(record));
    page.push_str("<h2>Images</h2>\n");
    page.push_str(&figures(images));
    page.push_str("</body>\n</html>\n");
    page
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;\
max-width:1100px;margin:2rem auto;padding:0 1rem}\
h1{font-size:1.4rem}\
h2{font-size:1.15rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2rem}\
h3{font-size:1rem}\
table{border-collapse:collapse}\
th,td{text-align:left;vertical-align:top;padding:.25rem .7rem;border-bottom:1px solid #eaeef2}\
table.meta th{font-weight:normal;color:#57606a}\
td.num,th.num{text-align:right}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}\
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;margin:.3rem 0}\
.status{border:1px solid;border-radius:4px;padding:0 .4rem;margin-right:.4rem}\
.warn{color:#9a6700}\
svg{max-width:100%;height:auto}\
figure{display:inline-block;margin:0 1rem 1rem 0}\
figure img{max-width:100%;border:1px solid #d0d7de}\
figcaption{font-size:.85rem}";

fn header(r: &RunRecord) -> String {
    let code_lines = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items
                .iter()
                .map(|i| format!("<code>{}</code>", esc(i)))
                .collect::<Vec<_>>()
                .join("<br>")
        }
    };
    let params = r.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let rows = [
        ("run", format!("<code>{}</code>", esc(&r.id))),
        (
            "pipeline",
            format!(
                "{} <code>{}</code>",
                esc(&r.name),
                esc(&r.pipeline.display().to_string())
            ),
        ),
        ("started", esc(&r.started)),
        (
            "duration",
            fmt_duration(std::time::Duration::from_millis(r.duration_ms)),
        ),
        ("status", format!("{:?}", r.status).to_lowercase()),
        ("backend", esc(&r.backend)),
        ("overrides", code_lines(r.overrides.clone())),
        ("params", code_lines(params)),
        (
            "cache",
            if r.no_cache {
                "bypassed (--no-cache)"
            } else {
                "used"
            }
            .to_string(),
        ),
        ("soma-flow", esc(&r.soma_flow_version)),
        (
            "git commit",
            r.git_commit.as_deref().map_or("unknown".to_string(), |c| {
                format!("<code>{}</code>", esc(c))
            }),
        ),
    ];
    let mut out = String::from("<table class=\"meta\">\n");
    for (name, value) in rows {
        out.push_str(&format!("<tr><th>{name}</th><td>{value}</td></tr>\n"));
    }
    out.push_str("</table>\n");
    out
}

fn status_badge(status: StageStatus) -> String {
    let (fill, stroke) = colours(status);
    format!(
        "<span class=\"status\" style=\"background:{fill};border-color:{stroke}\">{}</span>",
        status.label()
    )
}

fn legend() -> String {
    let badges: Vec<String> = ALL_STATUSES.into_iter().map(status_badge).collect();
    format!(
        "<p>{} <small>dashed arrows: <code>needs</code> (order only)</small></p>\n",
        badges.concat()
    )
}

/// A prefix of a hash; the whole text should a hand-edited record hold something shorter.
fn short(hash: &str) -> &str {
    hash.get(..SHORT_HASH).unwrap_or(hash)
}

fn stage_table(r: &RunRecord) -> String {
    let mut out = String::from(
        "<table class=\"stages\">\n<tr><th>stage</th><th>kind</th><th>status</th>\
         <th>time</th><th>cache key</th><th>outputs</th></tr>\n",
    );
    for (name, s) in &r.stages {
        let outputs: Vec<String> = s
            .outputs
            .iter()
            .map(|(out, a)| {
                format!(
                    "<code>{}</code> <code>{}</code> {}",
                    esc(out),
                    esc(short(&a.hash)),
                    fmt_bytes(a.size)
                )
            })
            .collect();
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td><code>{}</code></td><td>{}</td></tr>\n",
            esc(name),
            esc(&s.kind),
            status_badge(s.status),
            s.time_label(),
            esc(s.key.as_deref().map_or("", short)),
            outputs.join("<br>")
        ));
        if let (Some(msg), StageStatus::Failed | StageStatus::Deferred) = (&s.message, s.status) {
            out.push_str(&format!(
                "<tr><td></td><td colspan=\"5\"><pre>{}</pre></td></tr>\n",
                esc(msg)
            ));
        }
    }
    out.push_str("</table>\n");
    out
}

/// Each stage's notes: pipe tables drawn as tables, the rest as preformatted text.
fn notes(r: &RunRecord) -> String {
    let mut out = String::new();
    for (name, s) in r.stages.iter().filter(|(_, s)| !s.notes.is_empty()) {
        out.push_str(&format!("<h3>{}</h3>\n", esc(name)));
        let mut text: Vec<&str> = Vec::new();
        let flush = |text: &mut Vec<&str>, out: &mut String| {
            if !text.is_empty() {
                out.push_str(&format!("<pre>{}</pre>\n", esc(&text.join("\n"))));
                text.clear();
            }
        };
        for note in &s.notes {
            match crate::table::to_html(note, esc) {
                Some(table) => {
                    flush(&mut text, &mut out);
                    out.push_str(&table);
                }
                None => text.push(note),
            }
        }
        flush(&mut text, &mut out);
    }
    if out.is_empty() {
        out.push_str("<p>No stage reported notes.</p>\n");
    }
    out
}

fn figures(images: &Images) -> String {
    let mut out = String::new();
    for problem in &images.problems {
        out.push_str(&format!("<p class=\"warn\">{}</p>\n", esc(problem)));
    }
    for image in &images.found {
        let caption = esc(&image.caption);
        let file = esc(&image.file_name);
        out.push_str(&format!(
            "<figure><img src=\"data:image/png;base64,{}\" alt=\"{caption}\">\
             <figcaption><code>{caption}</code> (<a href=\"{file}\">{file}</a>)</figcaption></figure>\n",
            base64::engine::general_purpose::STANDARD.encode(&image.bytes)
        ));
    }
    if images.found.is_empty() {
        out.push_str("<p>No output is a PNG image.</p>\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::record::{RunRecord, RunStatus, StageRecord, StageStatus};

    pub fn stage(kind: &str, status: StageStatus, start_ms: u64, duration_ms: u64) -> StageRecord {
        StageRecord {
            kind: kind.to_string(),
            version: 1,
            status,
            key: Some("0123456789abcdef0123".to_string()),
            start_ms,
            duration_ms,
            with: serde_json::Value::Null,
            params_used: Vec::new(),
            inputs: Default::default(),
            key_material: serde_json::Value::Null,
            outputs: Default::default(),
            remote: false,
            unverified: None,
            message: None,
            notes: Vec::new(),
        }
    }

    pub fn record(stages: Vec<(&str, StageRecord)>) -> RunRecord {
        RunRecord {
            id: "20250101-120000-abcdef".to_string(),
            started: "2025-01-01T12:00:00Z".to_string(),
            duration_ms: 4_000,
            pipeline: "/p/pipe.yaml".into(),
            name: "pipe".to_string(),
            pipeline_hash: "h".to_string(),
            pipeline_source: String::new(),
            overrides: vec!["steps=3".to_string()],
            params: Default::default(),
            backend: "ndarray".to_string(),
            no_cache: false,
            soma_flow_version: "0.1.0".to_string(),
            git_commit: None,
            status: RunStatus::Failed,
            stages: stages
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{record, stage};
    use super::*;

    #[test]
    fn page_escapes_text_and_shows_messages_notes_and_missing_dependencies() {
        let mut bad = stage("command", StageStatus::Failed, 0, 10);
        bad.message = Some("exit 1: <stderr> & more".to_string());
        let mut score = stage("score", StageStatus::Ran, 10, 20);
        score.notes = vec![
            "mine <0.1> vs them".to_string(),
            "winner: mine".to_string(),
            "| model | loss |\n| --- | ---: |\n| <mine> | 0.1 |".to_string(),
            "(after the table)".to_string(),
        ];
        let mut r = record(vec![("bad", bad), ("score", score)]);
        r.name = "a<b>".to_string();
        let page = render(
            &r,
            &Err("kind `x` is unknown".to_string()),
            &Images::default(),
        );
        assert!(page.contains("<title>a&lt;b&gt;: run 20250101-120000-abcdef</title>"));
        assert!(!page.contains("a<b>"));
        assert!(page.contains("<pre>exit 1: &lt;stderr&gt; &amp; more</pre>"));
        assert!(page.contains(
            "<h3>score</h3>\n<pre>mine &lt;0.1&gt; vs them\nwinner: mine</pre>\n\
             <table class=\"note\">\n<tr><th>model</th><th class=\"num\">loss</th></tr>\n\
             <tr><td>&lt;mine&gt;</td><td class=\"num\">0.1</td></tr>\n</table>\n\
             <pre>(after the table)</pre>"
        ));
        assert!(page.contains("shows no dependencies:</p>\n<pre>kind `x` is unknown</pre>"));
        assert!(
            page.contains("<code>0123456789ab</code>"),
            "cache key prefix"
        );
        assert!(page.contains("<code>steps=3</code>"));
        assert!(page.contains("No output is a PNG image."));
        assert_eq!(page.matches("<svg").count(), 2);
    }

    #[test]
    fn short_hash_never_splits_a_character() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("ééééééé"), "éééééé");
        assert_eq!(short("aéééééé"), "aéééééé");
    }
}
