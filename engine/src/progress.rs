//! Progress of a run: a live view on a terminal, periodic plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::record::StageStatus;

/// How often a long stage prints a line when not on a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(15);

pub struct Progress {
    total: usize,
    inner: Mutex<Inner>,
    live: Option<MultiProgress>,
}

struct Inner {
    finished: usize,
    bars: HashMap<String, ProgressBar>,
    last_line: HashMap<String, Instant>,
}

impl Progress {
    /// A live view when stderr is a terminal, plain lines otherwise.
    pub fn new(total: usize) -> Self {
        let live = std::io::stderr().is_terminal().then(MultiProgress::new);
        Progress {
            total,
            live,
            inner: Mutex::new(Inner {
                finished: 0,
                bars: HashMap::new(),
                last_line: HashMap::new(),
            }),
        }
    }

    fn line(&self, text: &str) {
        match &self.live {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    pub fn started(&self, stage: &str, kind: &str) {
        let mut inner = self.inner.lock().unwrap();
        match &self.live {
            Some(m) => {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {wide_msg}",
                    )
                    .expect("static template"),
                );
                bar.set_prefix(format!("{stage} ({kind})"));
                bar.enable_steady_tick(Duration::from_millis(120));
                inner.bars.insert(stage.to_string(), bar);
            }
            None => {
                inner.last_line.insert(stage.to_string(), Instant::now());
                eprintln!(
                    "[{}/{}] {stage} ({kind}): running",
                    inner.finished, self.total
                );
            }
        }
    }

    /// A stage's own progress message (step, loss, bytes...).
    pub fn message(&self, stage: &str, msg: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(bar) = inner.bars.get(stage) {
            bar.set_message(msg.to_string());
            return;
        }
        if self.live.is_none() {
            let now = Instant::now();
            let due = inner
                .last_line
                .get(stage)
                .is_none_or(|t| now.duration_since(*t) >= PLAIN_EVERY);
            if due {
                inner.last_line.insert(stage.to_string(), now);
                eprintln!("      {stage}: {msg}");
            }
        }
    }

    pub fn waiting(&self, stage: &str) {
        self.line(&format!(
            "      {stage}: waiting for another soma-flow process running the same stage"
        ));
    }

    pub fn finished(
        &self,
        stage: &str,
        status: StageStatus,
        elapsed: Duration,
        note: Option<&str>,
    ) {
        let mut inner = self.inner.lock().unwrap();
        inner.finished += 1;
        if let Some(bar) = inner.bars.remove(stage) {
            bar.finish_and_clear();
        }
        inner.last_line.remove(stage);
        let n = inner.finished;
        drop(inner);
        let note = note
            .map(|n| format!(": {}", first_line(n)))
            .unwrap_or_default();
        self.line(&format!(
            "[{n}/{}] {stage}: {} in {}{note}",
            self.total,
            status.label(),
            crate::duration::fmt_duration(elapsed)
        ));
    }

    pub fn warn(&self, text: &str) {
        self.line(&format!("warning: {text}"));
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
