//! From mapped CDR rows to `call.completed` events in the outbox: numbers normalized to E.164,
//! the row matched to its tracking number's campaign, joined to the SIP side, minimized, and
//! appended. A batch is acknowledged only once its events are fsynced, so the file checkpoint
//! never runs ahead of the outbox (exactly once across crashes).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{TimeDelta, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::ingest::{RowSink, SinkError};
use super::quarantine::{Entry, Quarantine};
use super::row::Row;
use crate::call::recorder::CdrFacts;
use std::sync::{Mutex, PoisonError};

use crate::call::{CallerIdentity, E164, Normalizer, Recorder};
use crate::outbox::Outbox;

/// Turns rows into events; shared by every feed and the `cdr import` command.
pub struct Completer {
    recorder: Arc<Recorder>,
    normalizer: Normalizer,
    /// Tracking number (E.164) → campaign id.
    pool: std::sync::RwLock<Arc<HashMap<String, String>>>,
    tolerance: TimeDelta,
    /// Raw number text → E.164 (or not a number). Parsing a number with libphonenumber's rules
    /// costs microseconds; CDR files repeat the same tracking numbers (and often callers) on
    /// every row. Bounded: cleared when full.
    memo: Mutex<HashMap<String, Option<E164>>>,
}

const MEMO_CAPACITY: usize = 100_000;

/// Counts across files, for metrics and reports; registered into the process's registry.
#[derive(Debug, Clone)]
pub struct Counts {
    pub events: Counter,
    /// Rows for numbers outside the pool: the carrier's other traffic, not ours to record.
    pub ignored: Counter,
    pub refused: Counter,
    pub rows_ok: Counter,
    pub rows_quarantined: Counter,
    pub duplicates: Counter,
    pub files_ingested: Counter,
    pub files_failed: Counter,
    /// Raw CDR files deleted past their feed's retention.
    pub raw_purged: Counter,
    pub raw_purge_failures: Counter,
    /// One batch: its rows to events, appended and fsynced.
    pub batch_seconds: Histogram,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            events: Counter::default(),
            ignored: Counter::default(),
            refused: Counter::default(),
            rows_ok: Counter::default(),
            rows_quarantined: Counter::default(),
            duplicates: Counter::default(),
            files_ingested: Counter::default(),
            files_failed: Counter::default(),
            raw_purged: Counter::default(),
            raw_purge_failures: Counter::default(),
            batch_seconds: crate::ops::metrics::latency_buckets(),
        }
    }
}

impl Counts {
    /// Puts every counter into `registry` under `cdr_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cdr");
        r.register(
            "events",
            "call.completed events written from CDR rows",
            self.events.clone(),
        );
        r.register(
            "rows_ignored",
            "CDR rows for numbers outside the tracking pool",
            self.ignored.clone(),
        );
        r.register(
            "rows_refused",
            "CDR rows mapped but refused (quarantined) when making the event",
            self.refused.clone(),
        );
        r.register(
            "rows_ok",
            "CDR rows mapped and accepted",
            self.rows_ok.clone(),
        );
        r.register(
            "rows_quarantined",
            "CDR rows that could not be mapped and went to the quarantine",
            self.rows_quarantined.clone(),
        );
        r.register(
            "rows_duplicate",
            "CDR rows dropped as duplicates of an already ingested record",
            self.duplicates.clone(),
        );
        r.register(
            "files_ingested",
            "CDR files ingested to the end",
            self.files_ingested.clone(),
        );
        r.register(
            "files_failed",
            "CDR file ingests that stopped with an error (each is tried again with backoff)",
            self.files_failed.clone(),
        );
        r.register(
            "raw_files_purged",
            "Raw CDR files deleted past their feed's raw_retention_hours",
            self.raw_purged.clone(),
        );
        r.register(
            "raw_purge_failures",
            "Purges of raw CDR files that failed (files stay until the next hourly run)",
            self.raw_purge_failures.clone(),
        );
        r.register(
            "batch_seconds",
            "Time to turn one CDR batch into events and make them durable",
            self.batch_seconds.clone(),
        );
    }

    /// A finished file's report, into the counters.
    pub fn file_done(&self, report: &super::ingest::IngestReport) {
        self.files_ingested.inc();
        self.rows_done(report);
    }

    /// The rows of a report whose file is not finished yet (a held-back last line).
    pub fn rows_done(&self, report: &super::ingest::IngestReport) {
        self.rows_ok.inc_by(report.rows_ok);
        self.rows_quarantined.inc_by(report.rows_quarantined);
        self.duplicates.inc_by(report.duplicates);
    }
}

/// Why a mapped row still cannot become an event (quarantine reasons, fixed words).
const CALLED_NOT_A_NUMBER: &str = "called number is not a phone number";
const NO_EVENT: &str = "event could not be made (pseudonym key unavailable)";
const FUTURE_EPOCH: &str = "time in a key epoch after the current one";

impl Completer {
    pub fn new(
        recorder: Arc<Recorder>,
        normalizer: Normalizer,
        pool: HashMap<String, String>,
        tolerance: TimeDelta,
    ) -> Self {
        Self {
            recorder,
            normalizer,
            pool: std::sync::RwLock::new(Arc::new(pool)),
            tolerance,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a new number pool (config reload).
    pub fn set_pool(&self, pool: HashMap<String, String>) {
        *self.pool.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pool);
    }

    fn normalize(&self, raw: &str) -> Option<E164> {
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = memo.get(raw) {
            return known.clone();
        }
        let number = self.normalizer.normalize(raw).ok();
        if memo.len() >= MEMO_CAPACITY {
            memo.clear();
        }
        memo.insert(raw.to_owned(), number.clone());
        number
    }

    /// Who called, as the event may know it. A CLIR row (`Row::caller_withheld`, decided by the
    /// format's presentation column and withheld words) is withheld even though carriers export
    /// the real number; its cell is not even normalized, so it never enters the number cache.
    /// A cell that is no phone number (a trunk label, a placeholder) is withheld as well.
    fn caller(&self, row: &Row) -> CallerIdentity {
        if row.caller_withheld {
            return CallerIdentity::Withheld;
        }
        self.normalize(&row.calling_raw)
            .map_or(CallerIdentity::Withheld, CallerIdentity::Number)
    }

    /// The event for one row: `Ok(None)` when the row is not for a tracking number.
    pub fn event(&self, feed: &str, row: &Row) -> Result<Option<Vec<u8>>, &'static str> {
        let called: E164 = self.normalize(&row.called_raw).ok_or(CALLED_NOT_A_NUMBER)?;
        let pool = self
            .pool
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(campaign_id) = pool.get(called.as_str()) else {
            return Ok(None);
        };
        let caller = self.caller(row);
        let record_key = format!("{feed}/{}", row.record_id);
        let facts = CdrFacts {
            record_key: &record_key,
            call_id: row.call_id.as_deref(),
            caller: &caller,
            campaign_id,
            tracking_number: &called,
            start: row.start_utc,
            answered: row.answer_utc,
            ended: row.end_utc,
            duration_seconds: row.duration_seconds,
            disposition: row.disposition,
            tolerance: self.tolerance,
        };
        self.recorder
            .completed(&facts)
            .map(Some)
            .map_err(|e| match e {
                crate::call::KeyError::FutureEpoch => FUTURE_EPOCH,
                _ => NO_EVENT,
            })
    }
}

/// The `RowSink` of one file's ingest: runs on a blocking thread, appends through the runtime.
pub struct OutboxSink<'a> {
    pub completer: &'a Completer,
    pub outbox: &'a Outbox,
    pub runtime: tokio::runtime::Handle,
    pub quarantine: &'a mut Quarantine,
    pub feed: &'a str,
    pub file: &'a str,
    pub counts: &'a Counts,
    /// Set on shutdown: the next batch is refused, so the file stops at its last checkpoint.
    pub stop: &'a AtomicBool,
}

impl RowSink for OutboxSink<'_> {
    fn accept(&mut self, batch: Vec<Row>) -> Result<(), SinkError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(SinkError::Closed);
        }
        let started = std::time::Instant::now();
        let mut events = Vec::with_capacity(batch.len());
        for row in &batch {
            match self.completer.event(self.feed, row) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {
                    self.counts.ignored.inc();
                }
                Err(reason) => {
                    // The raw numbers rest only here, in the 0600 quarantine.
                    let raw = format!("calling={};called={}", row.calling_raw, row.called_raw);
                    let entry = Entry {
                        file: self.file,
                        line: row.line,
                        reason,
                        raw: &raw,
                    };
                    self.quarantine
                        .append(&entry, Utc::now())
                        .map_err(|_| SinkError::Refused)?;
                    self.counts.refused.inc();
                }
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let lines: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let outbox = self.outbox;
        self.runtime
            .block_on(async {
                outbox.append_batch(&lines).await?;
                outbox.flush().await
            })
            .map_err(|_| SinkError::Refused)?;
        self.counts.events.inc_by(lines.len() as u64);
        self.counts
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::call::{CallerPolicy, Keyring, Policy, Rotation};
    use crate::cdr::format::builtin_presets;
    use crate::cdr::row::Mapper;

    const TRACKING: &str = "+493055511000";

    fn completer(keys: &std::path::Path) -> Completer {
        let normalizer = Normalizer::new("DE").unwrap();
        let keyring = Keyring::open(&keys.join("keys"), Rotation::Monthly).unwrap();
        let policy = Policy {
            caller: CallerPolicy::default(),
            region_digits: Some(2),
        };
        let recorder = Recorder::new(keyring, normalizer.clone(), HashMap::new(), policy);
        let pool = HashMap::from([(TRACKING.to_owned(), "c".to_owned())]);
        Completer::new(
            Arc::new(recorder),
            normalizer,
            pool,
            TimeDelta::seconds(120),
        )
    }

    /// Rows of the legacy preset, whose column 8 is the ISUP presentation indicator.
    fn row(calling: &str, presentation: &str) -> Row {
        let m = Mapper::new(&builtin_presets().unwrap()["legacy-noheader"], None).unwrap();
        let cells = [
            "1",
            "1714723200",
            "1714723210",
            "1714723270",
            calling,
            TRACKING,
            "ANSWERED",
            "E1-0",
            presentation,
        ];
        m.map(&csv::ByteRecord::from(cells.to_vec())).unwrap()
    }

    #[test]
    fn a_clir_row_is_withheld_although_its_cell_is_a_number() {
        let keys = tempfile::tempdir().unwrap();
        let c = completer(keys.path());
        for (calling, presentation) in [
            ("+4917612345678", "1"),
            ("CLIR 017612345678", "0"),
            ("anonymous", ""),
            ("", ""),
            ("trunk-7", ""),
        ] {
            assert_eq!(
                c.caller(&row(calling, presentation)),
                CallerIdentity::Withheld,
                "{calling:?} / {presentation:?}"
            );
        }
        assert!(
            !c.memo
                .lock()
                .unwrap()
                .keys()
                .any(|k| k.contains("17612345678")),
            "a CLIR cell is never normalized, so never cached"
        );
        let presented = Normalizer::new("DE")
            .unwrap()
            .normalize("+4917612345678")
            .unwrap();
        assert_eq!(
            c.caller(&row("+4917612345678", "0")),
            CallerIdentity::Number(presented)
        );
    }

    #[test]
    fn a_clir_rows_event_says_withheld_and_carries_no_trace_of_the_number() {
        let keys = tempfile::tempdir().unwrap();
        let c = completer(keys.path());
        let event = c
            .event("feed", &row("+4917612345678", "1"))
            .unwrap()
            .unwrap();
        let text = String::from_utf8(event).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["caller_withheld"], true, "{text}");
        assert!(json.get("caller_pseudonym").is_none(), "{text}");
        assert!(json.get("caller_region").is_none(), "{text}");
        assert!(!text.contains("17612345678"), "{text}");
    }
}
