//! The scheduler: walks a graph and hands each stage out as soon as its dependencies
//! are done (turborepo's `execute` with a visitor). What running a stage means is the
//! visitor's business; the walk knows only the graph, which stages succeeded, and when
//! to stop.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::JoinSet;

/// Whoever runs the stages the walk hands out.
pub(super) trait Visitor {
    type Done: Send + 'static;
    /// Starts stage `i`; every stage it depends on is done (`done[d]`).
    fn start(
        &self,
        i: usize,
        done: &[Option<Self::Done>],
    ) -> impl Future<Output = Self::Done> + Send + 'static;
    fn succeeded(&self, done: &Self::Done) -> bool;
    /// Stage `i` will not run: `cause`, a stage it depends on (directly or not), ended as
    /// `caused` without succeeding.
    fn skipped(&self, i: usize, cause: usize, caused: &Self::Done) -> Self::Done;
    /// Stage `i`'s task panicked (a bug): how it ended.
    fn panicked(&self, i: usize, why: String) -> Self::Done;
}

/// How a walk ended.
pub(super) struct Walked<T> {
    /// Each stage's end; `None` where an interrupt came first.
    pub done: Vec<Option<T>>,
    /// The interrupt that stopped the walk, if one did.
    pub interrupted: Option<&'static str>,
    /// The stages that were handed out (a stage is, exactly when its last dependency
    /// succeeds).
    pub started: Vec<bool>,
}

/// Walks the graph whose stage `i` depends on the stages `deps[i]`, until every stage
/// is done or skipped, or `interrupt` comes (then stages running are left to the
/// visitor's tasks, detached, and unstarted ones are not started).
pub(super) async fn walk<V: Visitor>(
    deps: &[Vec<usize>],
    visitor: &V,
    interrupt: impl Future<Output = &'static str>,
) -> Walked<V::Done> {
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut done: Vec<Option<V::Done>> = (0..n).map(|_| None).collect();
    let mut running = Running {
        set: JoinSet::new(),
        tasks: HashMap::new(),
    };
    for i in (0..n).filter(|&i| waiting[i] == 0) {
        running.start(i, visitor.start(i, &done));
    }
    tokio::pin!(interrupt);
    let mut interrupted = None;
    while !running.set.is_empty() {
        let joined = tokio::select! {
            biased;
            signal = &mut interrupt => {
                interrupted = Some(signal);
                running.set.detach_all();
                break;
            }
            joined = running.set.join_next() => joined.expect("tasks are running"),
        };
        let (i, end) = match joined {
            Ok(ended) => ended,
            Err(e) => {
                let i = running.tasks[&e.id()];
                (i, visitor.panicked(i, e.to_string()))
            }
        };
        let ok = visitor.succeeded(&end);
        if !ok {
            skip_dependents(i, i, &end, &dependents, &mut done, visitor);
        }
        done[i] = Some(end);
        if ok {
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 && done[d].is_none() {
                    running.start(d, visitor.start(d, &done));
                }
            }
        }
    }
    Walked {
        done,
        interrupted,
        // A stage is handed out exactly when its last dependency succeeds.
        started: waiting.iter().map(|&w| w == 0).collect(),
    }
}

/// The stages handed out, as tasks.
struct Running<T> {
    set: JoinSet<(usize, T)>,
    tasks: HashMap<tokio::task::Id, usize>,
}

impl<T: Send + 'static> Running<T> {
    fn start(&mut self, i: usize, stage: impl Future<Output = T> + Send + 'static) {
        let task = self.set.spawn(async move { (i, stage.await) });
        self.tasks.insert(task.id(), i);
    }
}

/// Skips every stage that depends on `i`, directly or not, because of `cause`.
fn skip_dependents<V: Visitor>(
    i: usize,
    cause: usize,
    caused: &V::Done,
    dependents: &[Vec<usize>],
    done: &mut [Option<V::Done>],
    visitor: &V,
) {
    for &d in &dependents[i] {
        if done[d].is_none() {
            done[d] = Some(visitor.skipped(d, cause, caused));
            skip_dependents(d, cause, caused, dependents, done, visitor);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Stages that succeed unless listed as failing, recording the order they start in.
    struct Record {
        failing: Vec<usize>,
        order: Mutex<Vec<usize>>,
    }

    #[derive(Debug, PartialEq)]
    enum End {
        Ok,
        Failed,
        Skipped { cause: usize },
    }

    impl Visitor for Record {
        type Done = End;
        fn start(&self, i: usize, _: &[Option<End>]) -> impl Future<Output = End> + Send + 'static {
            self.order.lock().unwrap().push(i);
            let fails = self.failing.contains(&i);
            async move {
                tokio::task::yield_now().await;
                if i == 9 {
                    panic!("stage 9 panics");
                }
                match fails {
                    true => End::Failed,
                    false => End::Ok,
                }
            }
        }
        fn succeeded(&self, done: &End) -> bool {
            *done == End::Ok
        }
        fn skipped(&self, _: usize, cause: usize, caused: &End) -> End {
            assert_ne!(*caused, End::Ok);
            End::Skipped { cause }
        }
        fn panicked(&self, _: usize, _: String) -> End {
            End::Failed
        }
    }

    fn visitor(failing: &[usize]) -> Record {
        Record {
            failing: failing.to_vec(),
            order: Mutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn stages_start_after_their_dependencies_and_a_failure_skips_what_depends_on_it() {
        // 0 → 1 → 3 → 4, 0 → 2 → 3, 5 alone, 6 ← 5 and 2.
        let deps = vec![
            vec![],
            vec![0],
            vec![0],
            vec![1, 2],
            vec![3],
            vec![],
            vec![5, 2],
        ];
        let v = visitor(&[]);
        let walked = walk(&deps, &v, std::future::pending()).await;
        assert!(walked.interrupted.is_none());
        assert!(walked.done.iter().all(|d| *d == Some(End::Ok)));
        let order = v.order.into_inner().unwrap();
        let at = |i: usize| order.iter().position(|&s| s == i).unwrap();
        for (i, ds) in deps.iter().enumerate() {
            assert!(ds.iter().all(|&d| at(d) < at(i)), "{order:?}");
        }

        let v = visitor(&[2]);
        let walked = walk(&deps, &v, std::future::pending()).await;
        let skipped = Some(End::Skipped { cause: 2 });
        assert_eq!(walked.done[2], Some(End::Failed));
        assert_eq!(
            [&walked.done[3], &walked.done[4], &walked.done[6]],
            [&skipped; 3]
        );
        assert_eq!(walked.done[1], Some(End::Ok));
        assert_eq!(walked.done[5], Some(End::Ok));
        assert!(!walked.started[3] && !walked.started[6] && walked.started[1]);
    }

    #[tokio::test]
    async fn a_panicking_stage_ends_as_the_visitor_says_and_an_interrupt_stops_the_walk() {
        let deps = vec![
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![9],
        ];
        let walked = walk(&deps, &visitor(&[]), std::future::pending()).await;
        assert_eq!(walked.done[9], Some(End::Failed));
        assert_eq!(walked.done[10], Some(End::Skipped { cause: 9 }));

        // Interrupted at once: the roots were handed out, nothing after them.
        let deps = vec![vec![], vec![0]];
        let walked = walk(&deps, &visitor(&[]), async { "a test" }).await;
        assert_eq!(walked.interrupted, Some("a test"));
        assert!(walked.started[0] && !walked.started[1] && walked.done[1].is_none());
    }
}
