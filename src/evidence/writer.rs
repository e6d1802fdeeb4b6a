//! The daemon task that turns the outbox's `call.disclosed` events into evidence: it reads
//! through the durable reader `"evidence"`, and once a second at most appends a round's lines,
//! re-seals the days that changed and then commits the reader (see `store.rs` for why in that
//! order). Failures are logged, counted, and the writer starts over from its committed position
//! with a growing pause; shutdown runs one last round so the final calls get their lines.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::store::{REPLAY_WINDOW, Store};
use super::{EvidenceError, Layout, Stats};
use crate::outbox::Outbox;

/// The outbox reader name; outbox retention keeps what it has not committed.
pub const READER: &str = "evidence";

/// Rounds (each an append, a seal and a reader commit, so a few fsyncs) are at least this far
/// apart; evidence is not latency-critical and a seal a second is cheap.
const ROUND_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Runs until `shutdown` is cancelled (then one last round) and returns.
pub async fn run(outbox: Outbox, data_dir: &Path, stats: Arc<Stats>, shutdown: CancellationToken) {
    let layout = Layout::new(data_dir);
    let mut backoff = BACKOFF_MIN;
    loop {
        match session(&outbox, &layout, &stats, &shutdown, &mut backoff).await {
            Ok(()) => return,
            Err(err) => {
                stats.failed();
                tracing::warn!(error = %crate::ops::Chain(&err), retry_in_s = backoff.as_secs(), "Evidence writer failed; restarting it.");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One reader and one store, from their state on disk, until shutdown or the first failure.
async fn session(
    outbox: &Outbox,
    layout: &Layout,
    stats: &Stats,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> Result<(), EvidenceError> {
    let mut reader = outbox.reader(READER)?;
    let opened = layout.clone();
    let mut store = tokio::task::spawn_blocking(move || Store::open(opened))
        .await
        .map_err(|_| EvidenceError::Background)??;
    let mut replaying = true;
    let mut last_round: Option<Instant> = None;
    loop {
        let mut stopping = false;
        if let Some(at) = last_round {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => stopping = true,
                () = sleep_until(at + ROUND_EVERY) => {}
            }
        }
        let records = if stopping {
            reader.try_next_batch(REPLAY_WINDOW)?
        } else {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    stopping = true;
                    reader.try_next_batch(REPLAY_WINDOW)?
                }
                batch = reader.next_batch(REPLAY_WINDOW) => batch?,
            }
        };
        if let Some(last) = records.last().map(|r| r.position) {
            // File work (writes, fsyncs, signing) off the runtime threads.
            let (back, round) = tokio::task::spawn_blocking(move || {
                let round = store.apply(&records);
                (store, round)
            })
            .await
            .map_err(|_| EvidenceError::Background)?;
            store = back;
            let round = round?;
            stats.round(&round);
            if round.skipped > 0 {
                tracing::warn!(
                    skipped = round.skipped,
                    "Disclosure events that are not readable as this version's events got no evidence line."
                );
            }
            reader.commit(last).await?;
            if replaying {
                replaying = false;
                store.end_replay();
            }
            *backoff = BACKOFF_MIN;
            last_round = Some(Instant::now());
        }
        if stopping {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::call::Outcome;
    use crate::evidence::store::tests::call;
    use crate::evidence::{read_public_key, verify_day};
    use crate::outbox::{Options, Position};

    fn noon() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    async fn append(outbox: &Outbox, lines: &[Vec<u8>]) {
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        outbox.append_batch(&lines).await.unwrap();
    }

    /// Waits (bounded) until the writer has appended `n` lines in total.
    async fn wait_lines(stats: &Stats, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.lines() < n {
            assert!(Instant::now() < deadline, "{} of {n} lines", stats.lines());
            sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_writer_follows_the_outbox_commits_its_reader_and_stops_after_a_last_round() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path().join("outbox"), Options::default()).unwrap();
        append(&outbox, &call(noon(), Outcome::Complete)).await;
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (outbox, stats, stop, dir) = (
                outbox.clone(),
                stats.clone(),
                stop.clone(),
                tmp.path().to_owned(),
            );
            async move { run(outbox, &dir, stats, stop).await }
        });
        wait_lines(&stats, 1).await;
        append(&outbox, &call(noon(), Outcome::Objected)).await;
        wait_lines(&stats, 2).await;
        // Appended just before shutdown: the last round still writes it.
        append(&outbox, &call(noon(), Outcome::HungUp)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.lines(), 3);
        assert_eq!(stats.failures(), 0);
        let layout = Layout::new(tmp.path());
        let key = read_public_key(&layout.public_key()).unwrap();
        let day = noon().date_naive();
        let verdict = tokio::task::spawn_blocking(move || verify_day(&layout, day, &key))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(verdict, crate::evidence::Verdict::Ok { count: 3 });
        // The reader committed everything it consumed, so a restart writes nothing again.
        let reader = outbox.reader(READER).unwrap();
        assert_eq!(reader.position(), Position(9));
    }
}
