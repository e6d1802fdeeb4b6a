//! Supervision of the daemon's long-running tasks. A task that returns an error, panics or
//! returns while it should still run is logged at that moment (its fixed name and the error's
//! fixed words, never a panic payload: it may quote caller data), counted, and started again
//! after a bounded, doubling backoff. The [`Board`] shows which tasks run, for `/ready`, the
//! systemd watchdog and `calltrackd status`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{error, info, warn};

/// The first restart comes quickly (one bad datagram must not silence UDP for long); repeated
/// failures back off to at most `BACKOFF_MAX`, below the unit's `WatchdogSec=30`.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A task that ran this long before failing starts again from `BACKOFF_MIN`.
const STABLE: Duration = Duration::from_secs(60);

/// What a task's state means for the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serving depends on it: `/ready` fails and the watchdog is not fed while it is down.
    Critical,
    /// `/ready` fails while it is down, but restarting the process would not help sooner.
    Ready,
    /// Restarted like the others; neither readiness nor the watchdog wait for it.
    Background,
}

/// The error a supervised task ends with; its `Display` must be fixed words.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

/// One supervised task's live state.
#[derive(Debug)]
pub struct TaskState {
    pub name: &'static str,
    pub role: Role,
    running: AtomicBool,
    failures: AtomicU64,
}

impl TaskState {
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TaskLabel {
    task: &'static str,
}

const KINDS: [&str; 3] = ["error", "panic", "exit"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabel {
    task: &'static str,
    /// `error`, `panic` or `exit` (returned while it should have run on).
    kind: &'static str,
}

/// Every supervised task's state, and their counters in the metrics registry.
#[derive(Debug, Default)]
pub struct Board {
    tasks: Mutex<Vec<Arc<TaskState>>>,
    failures: Family<FailureLabel, Counter>,
    running: Family<TaskLabel, Gauge>,
}

impl Board {
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "task_failures",
            "Supervised tasks that failed (error, panic, or exit while they should run) and were restarted",
            self.failures.clone(),
        );
        registry.register(
            "task_running",
            "1 while a supervised task runs, 0 while it waits to be restarted",
            self.running.clone(),
        );
    }

    fn add(&self, name: &'static str, role: Role) -> Arc<TaskState> {
        let state = Arc::new(TaskState {
            name,
            role,
            running: AtomicBool::new(false),
            failures: AtomicU64::new(0),
        });
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(state.clone());
        // Every series exists at zero from the start, so alerts and dashboards see them.
        for kind in KINDS {
            let _ = self
                .failures
                .get_or_create(&FailureLabel { task: name, kind });
        }
        state
    }

    /// Every task, in the order they were started.
    pub fn tasks(&self) -> Vec<Arc<TaskState>> {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Names of the tasks with one of `roles` that are down now (each name once).
    pub fn down(&self, roles: &[Role]) -> Vec<&'static str> {
        let mut down: Vec<&'static str> = self
            .tasks()
            .iter()
            .filter(|t| roles.contains(&t.role) && !t.running())
            .map(|t| t.name)
            .collect();
        down.dedup();
        down
    }

    /// Whether every critical task runs: the watchdog is fed only then.
    pub fn critical_running(&self) -> bool {
        self.down(&[Role::Critical]).is_empty()
    }

    fn set_running(&self, state: &TaskState, running: bool) {
        state.running.store(running, Ordering::Relaxed);
        self.running
            .get_or_create(&TaskLabel { task: state.name })
            .set(i64::from(running));
    }

    fn failed(&self, state: &TaskState, kind: &'static str) {
        state.failures.fetch_add(1, Ordering::Relaxed);
        self.failures
            .get_or_create(&FailureLabel {
                task: state.name,
                kind,
            })
            .inc();
    }
}

/// Runs `make()`'s future as `name` until `stop` is cancelled, starting it again whenever it
/// fails. Each run is its own tokio task, so a panic ends only that run. The returned future
/// ends once `stop` is cancelled and the current run has returned.
pub fn supervise<F, Fut>(
    board: &Arc<Board>,
    name: &'static str,
    role: Role,
    stop: CancellationToken,
    mut make: F,
) -> impl Future<Output = ()> + Send + 'static
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    let board = board.clone();
    let state = board.add(name, role);
    board.set_running(&state, true);
    async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            board.set_running(&state, true);
            let started = Instant::now();
            // Dropping the supervisor (its JoinSet aborted) takes the run with it.
            let outcome = AbortOnDropHandle::new(tokio::spawn(make())).await;
            let stopping = stop.is_cancelled();
            let kind = match outcome {
                Ok(Ok(())) if stopping => return,
                Err(join) if !join.is_panic() => return,
                Ok(Ok(())) => "exit",
                Ok(Err(err)) => {
                    if stopping {
                        error!(task = name, error = %crate::ops::Chain(&*err), "Task failed while stopping.");
                    } else {
                        error!(task = name, error = %crate::ops::Chain(&*err), "Task failed; restarting it.");
                    }
                    "error"
                }
                Err(_) => {
                    error!(task = name, "Task panicked; restarting it.");
                    "panic"
                }
            };
            board.set_running(&state, false);
            board.failed(&state, kind);
            if stopping {
                return;
            }
            if kind == "exit" {
                warn!(
                    task = name,
                    "Task returned while it should run; restarting it."
                );
            }
            if started.elapsed() >= STABLE {
                backoff = BACKOFF_MIN;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            info!(task = name, "Task restarted.");
        }
    }
}

/// Adapts a task that ends only when told to (`()`) to `supervise`.
pub async fn infallible(task: impl Future<Output = ()>) -> Result<(), TaskError> {
    task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_counted_and_started_again() {
        let board = Arc::new(Board::default());
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let s = stop.clone();
        let task = tokio::spawn(supervise(
            &board,
            "udp",
            Role::Critical,
            stop.clone(),
            move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                async move {
                    assert!(n >= 2, "deliberate panic in run {n}");
                    s.cancelled().await;
                    Ok(())
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let states = board.tasks();
        assert_eq!(states[0].failures(), 2);
        assert!(states[0].running());
        assert!(board.critical_running());
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_doubling_up_to_the_bound_and_show_on_the_board() {
        let board = Arc::new(Board::default());
        let stop = CancellationToken::new();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let r = runs.clone();
        let task = tokio::spawn(supervise(
            &board,
            "kafka forwarder",
            Role::Ready,
            stop.clone(),
            move || {
                r.lock().unwrap().push(Instant::now());
                async { Err::<(), TaskError>("outbox read failed".into()) }
            },
        ));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let at = runs.lock().unwrap().clone();
        let gaps: Vec<_> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[0], BACKOFF_MIN);
        assert_eq!(gaps[1], BACKOFF_MIN * 2);
        assert!(gaps.iter().all(|g| *g <= BACKOFF_MAX));
        assert_eq!(*gaps.last().unwrap(), BACKOFF_MAX);
        // Between runs the task is down; a ready task does not stop the watchdog.
        assert_eq!(board.down(&[Role::Ready]), vec!["kafka forwarder"]);
        assert!(board.critical_running());
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_returns_early_is_restarted_but_not_after_stop() {
        let board = Arc::new(Board::default());
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let task = tokio::spawn(supervise(
            &board,
            "timer",
            Role::Critical,
            stop.clone(),
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        ));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!board.critical_running());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        stop.cancel();
        task.await.unwrap();
        let after = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), after);
    }
}
