//! Progress lines for long transfers and reads: bytes done / total and the rate.

use std::time::{Duration, Instant};

/// Receives human-readable progress lines (the engine's live view or log).
pub type ProgressFn<'a> = &'a (dyn Fn(&str) + Sync);

const REPORT_EVERY: Duration = Duration::from_secs(1);
const MB: f64 = 1e6;

/// Counts bytes for one labelled task and reports at most once per second.
pub struct Meter<'a> {
    report: ProgressFn<'a>,
    label: String,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Instant,
}

impl<'a> Meter<'a> {
    pub fn new(report: ProgressFn<'a>, label: impl Into<String>, total: Option<u64>) -> Self {
        let now = Instant::now();
        Meter {
            report,
            label: label.into(),
            total,
            done: 0,
            start: now,
            last: now,
        }
    }

    /// Sets the count directly, e.g. when a download resumes from a partial file.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        self.tick();
    }

    pub fn add(&mut self, bytes: u64) {
        self.done += bytes;
        self.tick();
    }

    fn tick(&mut self) {
        if self.last.elapsed() >= REPORT_EVERY {
            self.last = Instant::now();
            (self.report)(&self.line());
        }
    }

    /// Reports the final figures.
    pub fn finish(&self, extra: &str) {
        (self.report)(&format!("{}{extra}", self.line()));
    }

    pub fn line(&self) -> String {
        let seconds = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / MB / seconds;
        let done = self.done as f64 / MB;
        match self.total {
            Some(total) if total > 0 => format!(
                "{}: {done:.1}/{:.1} MB ({:.0}%), {rate:.1} MB/s",
                self.label,
                total as f64 / MB,
                100.0 * self.done as f64 / total as f64
            ),
            _ => format!("{}: {done:.1} MB, {rate:.1} MB/s", self.label),
        }
    }
}
