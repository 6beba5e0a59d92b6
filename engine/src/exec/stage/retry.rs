//! Step 4: execution, tried as the stage's `retry` allows.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;

/// What the tries came to: the last one's result, and a note for each that failed
/// before it.
pub(super) struct Tried<T> {
    pub result: Result<T>,
    pub notes: Vec<String>,
}

/// Runs `attempt` up to `tries` times, until one succeeds, waiting `backoff` (doubled
/// each time) between them; `retrying` hears of each failure that is tried again (its
/// number, its error's first line, the wait). The last failure's error says which
/// attempt it was when there were several.
pub(super) async fn tries<T, F, Fut>(
    tries: u32,
    mut backoff: Duration,
    mut attempt: F,
    retrying: impl Fn(usize, &str, Duration),
) -> Tried<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut failures = Vec::new();
    let result = loop {
        match attempt().await {
            Err(e) if failures.len() + 1 < tries as usize => {
                let e = format!("{e:#}");
                retrying(failures.len() + 1, e.lines().next().unwrap_or(""), backoff);
                failures.push(e);
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            result => break result,
        }
    };
    let result = result.map_err(|e| match failures.len() {
        0 => e,
        n => e.context(format!("attempt {} of {tries}", n + 1)),
    });
    let notes = failures
        .iter()
        .enumerate()
        .map(|(n, e)| format!("attempt {} of {tries} failed: {e}", n + 1))
        .collect();
    Tried { result, notes }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// An attempt that fails `failing` times, then succeeds.
    fn flaky(failing: u32) -> (AtomicU32, u32) {
        (AtomicU32::new(0), failing)
    }

    async fn run(tries_allowed: u32, failing: u32) -> (Tried<u32>, Vec<usize>) {
        let (calls, failing) = flaky(failing);
        let heard = std::sync::Mutex::new(Vec::new());
        let tried = tries(
            tries_allowed,
            Duration::from_millis(1),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    match n <= failing {
                        true => Err(anyhow::anyhow!("failure {n}\nmore")),
                        false => Ok(n),
                    }
                }
            },
            |n, first_line, _| {
                assert_eq!(first_line, format!("failure {n}"));
                heard.lock().unwrap().push(n);
            },
        )
        .await;
        (tried, heard.into_inner().unwrap())
    }

    #[tokio::test]
    async fn failures_are_tried_again_until_one_succeeds_or_the_tries_run_out() {
        let (tried, heard) = run(3, 2).await;
        assert_eq!(tried.result.unwrap(), 3);
        assert_eq!(heard, [1, 2]);
        assert_eq!(tried.notes.len(), 2);
        assert!(tried.notes[1].starts_with("attempt 2 of 3 failed: failure 2"));

        let (tried, heard) = run(2, 5).await;
        let e = format!("{:#}", tried.result.unwrap_err());
        assert!(e.starts_with("attempt 2 of 2: failure 2"), "{e}");
        assert_eq!(heard, [1]);

        let (tried, heard) = run(1, 1).await;
        assert_eq!(format!("{}", tried.result.unwrap_err()), "failure 1\nmore");
        assert!(heard.is_empty() && tried.notes.is_empty());
    }
}
