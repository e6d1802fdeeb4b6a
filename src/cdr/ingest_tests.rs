//! File-level tests: the shipped samples through `ingest_file`, resume, duplicates, quarantine.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::*;
use crate::cdr::dedup::Limits as DedupLimits;
use crate::cdr::format::builtin_presets;
use crate::cdr::row::Disposition;

struct Env {
    data: tempfile::TempDir,
    spool: tempfile::TempDir,
    presets: BTreeMap<String, Format>,
    cp: Checkpoints,
    q: Quarantine,
}

impl Env {
    fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let cp = Checkpoints::open(data.path(), DedupLimits::default(), Utc::now()).unwrap();
        let q = Quarantine::open(data.path()).unwrap();
        Self {
            data,
            spool: tempfile::tempdir().unwrap(),
            presets: builtin_presets().unwrap(),
            cp,
            q,
        }
    }

    /// Copies a fixture into the spool under `name`.
    fn drop_fixture(&self, fixture: &str, name: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cdr")
            .join(fixture);
        let dst = self.spool.path().join(name);
        fs::copy(src, &dst).unwrap();
        dst
    }

    fn drop_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let dst = self.spool.path().join(name);
        fs::write(&dst, bytes).unwrap();
        dst
    }

    fn run(
        &mut self,
        path: &Path,
        preset: &str,
        batch: usize,
        sink: &mut impl RowSink,
    ) -> Result<IngestReport, IngestError> {
        let format = self.presets[preset].clone();
        let job = Job {
            feed: "feed-a",
            format: &format,
            after: After::Keep,
            marker: false,
            batch_size: batch,
            limits: wide(),
            final_tail: true,
        };
        ingest_file(path, &job, &mut self.cp, &mut self.q, sink)
    }

    fn quarantined(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.data.path().join("cdr/quarantine")).unwrap() {
            let text = fs::read_to_string(e.unwrap().path()).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
        out
    }
}

/// The default bounds with a time window reaching back to the fixtures (2024).
fn wide() -> Limits {
    Limits {
        max_past_days: 365 * 100,
        ..Limits::default()
    }
}

fn collect(rows: &mut Vec<Row>) -> impl FnMut(Vec<Row>) -> Result<(), SinkError> + '_ {
    move |batch| {
        rows.extend(batch);
        Ok(())
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn sipcarrier_sample_delivers_every_row_with_fields() {
    let mut env = Env::new();
    let path = env.drop_fixture("sipcarrier-sample.csv", "s.csv");
    let mut rows = Vec::new();
    let report = env
        .run(&path, "sipcarrier-csv", 5, &mut collect(&mut rows))
        .unwrap();
    assert_eq!(report.rows_ok, 14);
    assert_eq!((report.rows_quarantined, report.duplicates), (0, 0));
    let first = &rows[0];
    assert_eq!(first.record_id, "C880100");
    assert_eq!(
        first.call_id.as_deref(),
        Some("52e6b438-f2a7@sbc.example.net")
    );
    assert_eq!(first.start_utc, utc("2024-05-02T08:00:00Z"));
    assert_eq!(first.answer_utc, Some(utc("2024-05-02T08:00:08Z")));
    assert_eq!(first.duration_seconds, 54, "53631 ms rounds up");
    assert_eq!(first.calling_raw, "+493055502471");
    assert_eq!(first.called_raw, "+493055511000");
    assert_eq!(first.disposition, Disposition::Answered);
    assert_eq!(first.trunk.as_deref(), Some("tg-ber-2"));
    let quoted = &rows[5];
    assert_eq!(
        quoted.call_id.as_deref(),
        Some("quoted,call-id@sbc.example.net")
    );
    assert_eq!(quoted.disposition, Disposition::NoAnswer);
    let by_id: HashMap<_, _> = rows
        .iter()
        .map(|r| (r.record_id.as_str(), r.disposition))
        .collect();
    assert_eq!(by_id["C880103"], Disposition::Busy);
    assert_eq!(by_id["C880104"], Disposition::Cancelled);
    assert_eq!(by_id["C880108"], Disposition::Failed);
    assert!(env.cp.lookup(&FileId::of(&path).unwrap()).unwrap().complete);
}

#[test]
fn telekom_sample_decodes_latin1_and_berlin_time() {
    let mut env = Env::new();
    let path = env.drop_fixture("telekom-sample.csv", "t.csv");
    let mut rows = Vec::new();
    let report = env
        .run(&path, "telekom-style", 100, &mut collect(&mut rows))
        .unwrap();
    assert_eq!(report.rows_ok, 12);
    assert_eq!(rows[0].trunk.as_deref(), Some("Bündel Süd"));
    assert_eq!(rows[1].trunk.as_deref(), Some("Bündel Nord"));
    assert_eq!(rows[0].calling_raw, "030 55505146");
    // 30.03.2024 22:50:00 CET
    assert_eq!(rows[0].start_utc, utc("2024-03-30T21:50:00Z"));
    assert_eq!(rows[0].disposition, Disposition::Answered);
    assert_eq!(rows[2].disposition, Disposition::Busy);
    assert_eq!(rows[3].disposition, Disposition::NoAnswer);
    assert_eq!(
        rows[4].disposition,
        Disposition::Cancelled,
        "cause 16 without answer"
    );
    assert_eq!(rows[7].disposition, Disposition::Failed);
    // Answered 01:57:16 CET, ended 03:00:31 CEST: 195 s across the DST switch.
    let last = rows.last().unwrap();
    assert_eq!(last.answer_utc, Some(utc("2024-03-31T00:57:16Z")));
    assert_eq!(last.end_utc, Some(utc("2024-03-31T01:00:31Z")));
    assert_eq!(last.duration_seconds, 195);
}

#[test]
fn legacy_sample_maps_disposition_words_and_derives_duration() {
    let mut env = Env::new();
    let path = env.drop_fixture("legacy-sample.csv", "l.csv");
    let mut rows = Vec::new();
    let report = env
        .run(&path, "legacy-noheader", 4, &mut collect(&mut rows))
        .unwrap();
    assert_eq!(report.rows_ok, 16);
    let r = &rows[0];
    assert_eq!(r.record_id, "7700");
    assert_eq!(
        r.start_utc,
        DateTime::from_timestamp(1_714_723_200, 0).unwrap()
    );
    assert_eq!(r.duration_seconds, 1_714_724_387 - 1_714_723_210);
    assert_eq!(r.trunk.as_deref(), Some("E1-0"));
    let words: Vec<_> = rows.iter().map(|r| r.disposition).collect();
    assert_eq!(&words[2..4], &[Disposition::Busy, Disposition::NoAnswer]);
    assert_eq!(words[8], Disposition::Failed, "CONGESTION");
    assert_eq!(words[9], Disposition::Cancelled, "CANCEL");
    assert!(rows[2].answer_utc.is_none() && rows[2].duration_seconds == 0);
    // Column 8 is the presentation indicator: 7703 and 7712 are CLIR calls, number kept raw.
    let withheld: Vec<_> = rows
        .iter()
        .filter(|r| r.caller_withheld)
        .map(|r| r.record_id.as_str())
        .collect();
    assert_eq!(withheld, ["7703", "7712"]);
    assert_eq!(rows[3].calling_raw, "+493055507474");
}

#[test]
fn gzip_sample_delivers_the_same_rows_as_plain() {
    let mut plain_env = Env::new();
    let mut gz_env = Env::new();
    let plain = plain_env.drop_fixture("sipcarrier-sample.csv", "s.csv");
    let gz = gz_env.drop_fixture("sipcarrier-sample.csv.gz", "s.csv.gz");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    plain_env
        .run(&plain, "sipcarrier-csv", 3, &mut collect(&mut a))
        .unwrap();
    let report = gz_env
        .run(&gz, "sipcarrier-csv", 3, &mut collect(&mut b))
        .unwrap();
    assert_eq!(report.rows_ok, 14);
    assert_eq!(a, b);
}

const BAD_MIDDLE: &str = "\
cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group
A1,c1,2024-05-02T08:00:00Z,,2024-05-02T08:00:10Z,0,+493055500001,+493055510001,486,tg
A2,c2,02/05/2024 08:01,,,0,+493055500002,+493055510001,486,tg
A3,c3,2024-05-02T08:02:00Z,,,0,+493055500003,+493055510001,999,tg
A4,c4,2024-05-02T08:03:00Z
A5,c5,2024-05-02T08:04:00Z,2024-05-02T08:04:05Z,2024-05-02T08:05:05Z,60000,+493055500005,+493055510001,200,tg
A6,c6,2024-05-02T08:05:00Z,,,abc,+493055500006,+493055510001,487,tg
A7,c7,2024-05-02T08:06:00Z,,,0,+493055500007,+493055510001,480,tg
";

#[test]
fn bad_rows_are_quarantined_with_line_and_reason_and_good_rows_flow() {
    let mut env = Env::new();
    let path = env.drop_bytes("bad.csv", BAD_MIDDLE.as_bytes());
    let mut rows = Vec::new();
    let report = env
        .run(&path, "sipcarrier-csv", 2, &mut collect(&mut rows))
        .unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(ids, ["A1", "A5", "A7"]);
    assert_eq!(report.rows_quarantined, 4);
    let q = env.quarantined();
    let got: Vec<(u64, &str)> = q
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "bad time in column start"),
            (4, "bad cause code in column cause_code"),
            (5, "missing column calling_number"),
            (7, "bad number in column duration"),
        ]
    );
    assert_eq!(q[0]["file"], path.to_string_lossy().as_ref());
    assert!(q[3]["raw"].as_str().unwrap().starts_with("A6,c6,"));
    for e in &q {
        assert!(
            !e["reason"].as_str().unwrap().contains("+49"),
            "reason leaks content"
        );
    }
}

#[test]
fn failed_sink_then_rerun_delivers_each_row_exactly_once() {
    for fixture in ["sipcarrier-sample.csv", "sipcarrier-sample.csv.gz"] {
        let mut env = Env::new();
        let path = env.drop_fixture(fixture, "r.csv");
        let mut delivered: Vec<Row> = Vec::new();
        let mut calls = 0;
        let mut flaky = |batch: Vec<Row>| {
            calls += 1;
            if calls > 2 {
                return Err(SinkError::Refused);
            }
            delivered.extend(batch);
            Ok(())
        };
        let err = env.run(&path, "sipcarrier-csv", 4, &mut flaky).unwrap_err();
        assert!(matches!(err, IngestError::Sink(SinkError::Refused)));
        assert_eq!(delivered.len(), 8);
        let report = env
            .run(&path, "sipcarrier-csv", 4, &mut collect(&mut delivered))
            .unwrap();
        assert!(report.resumed, "{fixture}");
        assert_eq!(report.rows_ok, 6);
        assert_eq!(report.duplicates, 0);
        let mut ids: Vec<_> = delivered.iter().map(|r| r.record_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 14, "{fixture}");
        assert_eq!(delivered.len(), 14, "{fixture}");
    }
}

#[test]
fn resume_keeps_quarantine_line_numbers() {
    let mut env = Env::new();
    let path = env.drop_bytes("bad.csv", BAD_MIDDLE.as_bytes());
    let mut calls = 0;
    let mut fail_second = |_: Vec<Row>| {
        calls += 1;
        if calls == 2 {
            Err(SinkError::Refused)
        } else {
            Ok(())
        }
    };
    // Batch 1 (lines 2-3) commits; batch 2 (lines 4-5) has no good row, so it commits
    // without calling the sink; batch 3 (lines 6-7) fails.
    env.run(&path, "sipcarrier-csv", 2, &mut fail_second)
        .unwrap_err();
    let mut rows = Vec::new();
    env.run(&path, "sipcarrier-csv", 2, &mut collect(&mut rows))
        .unwrap();
    let lines: Vec<u64> = env
        .quarantined()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5, 7]);
    let ids: Vec<_> = rows.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(ids, ["A5", "A7"]);
}

#[test]
fn same_content_under_a_new_name_is_skipped() {
    let mut env = Env::new();
    let first = env.drop_fixture("legacy-sample.csv", "day1.csv");
    let again = env.drop_fixture("legacy-sample.csv", "day1-resent.csv");
    let mut rows = Vec::new();
    env.run(&first, "legacy-noheader", 100, &mut collect(&mut rows))
        .unwrap();
    let report = env
        .run(&again, "legacy-noheader", 100, &mut collect(&mut rows))
        .unwrap();
    assert!(report.skipped_already_done);
    assert_eq!(report.rows_ok, 0);
    assert_eq!(rows.len(), 16);
}

#[test]
fn duplicate_record_ids_are_dropped_and_counted() {
    let mut env = Env::new();
    let one = "1|1714723200|0|1714723210|+4930555000|+4930555100|BUSY|\n\
               2|1714723300|0|1714723310|+4930555000|+4930555100|BUSY|\n\
               1|1714723200|0|1714723210|+4930555000|+4930555100|BUSY|\n";
    let two = "2|1714723300|0|1714723310|+4930555000|+4930555100|BUSY|\n\
               3|1714723400|0|1714723410|+4930555000|+4930555100|BUSY|\n";
    let a = env.drop_bytes("a.csv", one.as_bytes());
    let b = env.drop_bytes("b.csv", two.as_bytes());
    let mut rows = Vec::new();
    let ra = env
        .run(&a, "legacy-noheader", 10, &mut collect(&mut rows))
        .unwrap();
    assert_eq!((ra.rows_ok, ra.duplicates), (2, 1), "within one file");
    let rb = env
        .run(&b, "legacy-noheader", 10, &mut collect(&mut rows))
        .unwrap();
    assert_eq!((rb.rows_ok, rb.duplicates), (1, 1), "across files");
    let ids: Vec<_> = rows.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[test]
fn after_move_and_delete_take_the_marker_along() {
    let mut env = Env::new();
    let done = env.spool.path().join("done");
    let format = env.presets["legacy-noheader"].clone();
    let path = env.drop_fixture("legacy-sample.csv", "m.csv");
    fs::write(marker_path(&path), b"").unwrap();
    let job = Job {
        feed: "f",
        format: &format,
        after: After::Move(done.clone()),
        marker: true,
        batch_size: 50,
        limits: wide(),
        final_tail: true,
    };
    let mut sink = |_: Vec<Row>| Ok(());
    ingest_file(&path, &job, &mut env.cp, &mut env.q, &mut sink).unwrap();
    assert!(!path.exists() && !marker_path(&path).exists());
    assert!(done.join("m.csv").exists());
    // A later file of the same name does not overwrite the first.
    let path = env.drop_bytes("m.csv", b"99|1714723200|0|1714723210|1|2|BUSY|\n");
    ingest_file(&path, &job, &mut env.cp, &mut env.q, &mut sink).unwrap();
    assert!(done.join("m.csv.1").exists());

    let path = env.drop_bytes("d.csv", b"98|1714723200|0|1714723210|1|2|BUSY|\n");
    let job = Job {
        after: After::Delete,
        marker: false,
        ..job
    };
    ingest_file(&path, &job, &mut env.cp, &mut env.q, &mut sink).unwrap();
    assert!(!path.exists());
}

#[test]
fn a_stored_then_purged_file_is_not_ingested_again() {
    use std::os::unix::fs::MetadataExt;
    let mut env = Env::new();
    let store = raw::store_dir(env.data.path(), "feed-a");
    let format = env.presets["legacy-noheader"].clone();
    let job = Job {
        feed: "feed-a",
        format: &format,
        after: After::Store(store.clone()),
        marker: false,
        batch_size: 50,
        limits: wide(),
        final_tail: true,
    };
    let path = env.drop_fixture("legacy-sample.csv", "day1.csv");
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut rows = Vec::new();
    let report = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert_eq!(report.rows_ok, 16);
    assert!(!path.exists());
    let stored = store.join("day1.csv");
    assert_eq!(fs::metadata(&stored).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&store).unwrap().mode() & 0o777, 0o700);
    // Renamed, not copied: the checkpoint still knows the stored file by its identity.
    assert!(
        env.cp
            .lookup(&FileId::of(&stored).unwrap())
            .unwrap()
            .complete
    );

    // Past its retention the purge deletes it...
    fs::File::options()
        .write(true)
        .open(&stored)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - raw::hours(73))
        .unwrap();
    let retention = raw::Retention::store(env.data.path(), "feed-a");
    assert_eq!(
        retention
            .purge(std::time::SystemTime::now(), |_| false)
            .unwrap(),
        1
    );
    assert!(!stored.exists());
    // ...and the carrier's resend of the same export is recognised, not ingested twice.
    let again = env.drop_fixture("legacy-sample.csv", "day1-resent.csv");
    let report = ingest_file(
        &again,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert!(report.skipped_already_done);
    assert_eq!(rows.len(), 16, "no row twice");
    assert!(
        store.join("day1-resent.csv").exists(),
        "the resend is stored too"
    );
}

#[test]
fn missing_header_column_fails_the_file_without_completing_it() {
    let mut env = Env::new();
    let path = env.drop_bytes("h.csv", b"cdr_id,setup_time\nA,2024-05-02T08:00:00Z\n");
    let mut rows = Vec::new();
    let err = env
        .run(&path, "sipcarrier-csv", 10, &mut collect(&mut rows))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CDR file does not fit its format: columns.call_id names a column that is not in the file header"
    );
    assert_eq!(env.cp.lookup(&FileId::of(&path).unwrap()), None);
}

#[test]
fn channel_sink_waits_for_the_async_acknowledgement() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (tx, mut rx) = mpsc::channel::<Delivery>(1);
    let consumer = rt.spawn(async move {
        let mut n = 0;
        while let Some((batch, ack)) = rx.recv().await {
            n += batch.len();
            let _ = ack.send(Ok(()));
        }
        n
    });
    let mut env = Env::new();
    let path = env.drop_fixture("legacy-sample.csv", "c.csv");
    let handle = std::thread::spawn(move || {
        let mut sink = ChannelSink::new(tx);
        let r = env.run(&path, "legacy-noheader", 10, &mut sink);
        drop(sink);
        r.map(|r| r.rows_ok)
    });
    let n = rt.block_on(consumer).unwrap();
    assert_eq!(n, 16);
    assert_eq!(handle.join().unwrap().unwrap(), 16);
}

/// Ten rows of the SIP-carrier preset (lines 2 to 11), ids R0..R9.
fn ten_rows(bad_third: bool) -> String {
    rows(10, bad_third)
}

/// `n` rows of the SIP-carrier preset (lines 2 to n + 1), ids R0...
fn rows(n: usize, bad_third: bool) -> String {
    let mut text = String::from(
        "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n",
    );
    for i in 0..n {
        let call_id = if bad_third && i == 2 {
            "\"open-quote".to_owned()
        } else {
            format!("\"c{i}\"")
        };
        text.push_str(&format!(
            "R{i},{call_id},2024-05-02T08:{m:02}:00Z,,,0,+4930555{i:05},+493055510001,486,tg\n",
            m = i % 60
        ));
    }
    text
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.record_id.as_str()).collect()
}

#[test]
fn an_unbalanced_quote_in_row_3_of_10_quarantines_that_row_only() {
    let mut env = Env::new();
    let path = env.drop_bytes("q.csv", ten_rows(true).as_bytes());
    let mut rows = Vec::new();
    let report = env
        .run(&path, "sipcarrier-csv", 4, &mut collect(&mut rows))
        .unwrap();
    assert_eq!(
        ids(&rows),
        ["R0", "R1", "R3", "R4", "R5", "R6", "R7", "R8", "R9"]
    );
    assert_eq!(report.rows_quarantined, 1);
    let q = env.quarantined();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["line"], 4);
    assert_eq!(q[0]["reason"], "unbalanced quote");
    assert!(q[0]["raw"].as_str().unwrap().starts_with("R2,\"open-quote"));
    assert!(env.cp.lookup(&FileId::of(&path).unwrap()).unwrap().complete);
}

#[test]
fn a_gzip_bomb_is_quarantined_after_the_rows_before_it() {
    use std::io::Write;
    let mut env = Env::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(ten_rows(false).as_bytes()).unwrap();
    // Then 64 MiB of zeros without a newline: about 1000:1.
    let zeros = vec![b'0'; 1024 * 1024];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let path = env.drop_bytes("bomb.csv.gz", &gz.finish().unwrap());
    let mut rows = Vec::new();
    let report = env
        .run(&path, "sipcarrier-csv", 100, &mut collect(&mut rows))
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(report.rows_quarantined, 1);
    let q = env.quarantined();
    assert_eq!(q[0]["line"], 12);
    assert_eq!(
        q[0]["reason"],
        "gzip stream expands more than max_gzip_ratio; the rest of the file is not read"
    );
    assert!(env.cp.lookup(&FileId::of(&path).unwrap()).unwrap().complete);
}

#[test]
fn rows_outside_the_time_window_are_quarantined_with_the_bound() {
    let mut env = Env::new();
    let future = (Utc::now() + chrono::TimeDelta::days(3)).format("%Y-%m-%dT%H:%M:%SZ");
    let text = format!(
        "{}F1,,{future},,,0,+4930555000,+493055510001,486,tg\n",
        ten_rows(false)
    );
    let path = env.drop_bytes("t.csv", text.as_bytes());
    let mut rows = Vec::new();
    let format = env.presets["sipcarrier-csv"].clone();
    // The default window: the 2024 rows are too old, the last one too far ahead.
    let job = Job {
        feed: "feed-a",
        format: &format,
        after: After::Keep,
        marker: false,
        batch_size: 100,
        limits: Limits::default(),
        final_tail: true,
    };
    let report = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert_eq!((report.rows_ok, report.rows_quarantined), (0, 11));
    let q = env.quarantined();
    assert_eq!(
        q[0]["reason"],
        "time in column start is more than max_past_days old"
    );
    assert_eq!(q[10]["line"], 12);
    assert_eq!(
        q[10]["reason"],
        "time in column start is more than max_future_hours ahead"
    );
}

#[test]
fn a_last_line_without_newline_waits_and_an_append_is_read_on_once() {
    let mut env = Env::new();
    // Over 4 KiB, so that appending keeps the file's identity (its first 4 KiB).
    let full = rows(80, false);
    assert!(full.len() > 4096);
    // A stalled upload: cut in the middle of row R70 (line 72).
    let cut = full.find("R70,").unwrap() + 10;
    let path = env.drop_bytes("s.csv", &full.as_bytes()[..cut]);
    let format = env.presets["sipcarrier-csv"].clone();
    let job = Job {
        feed: "feed-a",
        format: &format,
        after: After::Keep,
        marker: false,
        batch_size: 3,
        limits: wide(),
        final_tail: false,
    };
    let mut rows = Vec::new();
    let report = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert!(report.held_back);
    assert_eq!(rows.len(), 70);
    assert_eq!(rows[69].record_id, "R69");
    assert!(
        env.quarantined().is_empty(),
        "the cut row is not quarantined"
    );
    let state = env.cp.lookup(&FileId::of(&path).unwrap()).unwrap();
    assert!(!state.complete);
    // The upload goes on: the rest appears, each row once, and the file is finished.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&full.as_bytes()[cut..])
        .unwrap();
    let report = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert!(report.resumed && !report.held_back);
    assert_eq!(report.duplicates, 0, "read on from the offset, not again");
    assert_eq!(rows.len(), 80);
    assert_eq!(ids(&rows)[70], "R70");
    assert!(env.cp.lookup(&FileId::of(&path).unwrap()).unwrap().complete);
    // A finished file that grows again is read on too, not skipped.
    let more = "R80,,2024-05-02T09:00:00Z,,,0,+4930555000,+493055510001,486,tg\n";
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(more.as_bytes())
        .unwrap();
    let report = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert!(!report.skipped_already_done && report.duplicates == 0);
    assert_eq!(ids(&rows)[80..], ["R80"]);
    // Unchanged now: skipped.
    let report = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert!(report.skipped_already_done);
    // The tail is read once the caller says the file is complete.
    let mut env = Env::new();
    let full = ten_rows(false);
    let tail = env.drop_bytes("tail.csv", &full.as_bytes()[..full.len() - 1]);
    let mut last = Vec::new();
    let held = ingest_file(
        &tail,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut last),
    )
    .unwrap();
    assert!(held.held_back);
    let done = Job {
        final_tail: true,
        ..job
    };
    ingest_file(
        &tail,
        &done,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut last),
    )
    .unwrap();
    assert_eq!(last.len(), 10);
    assert_eq!(last[9].record_id, "R9");
}

#[test]
fn a_small_file_that_grows_is_read_on_from_its_offset_too() {
    let mut env = Env::new();
    let full = ten_rows(false);
    assert!(
        full.len() < 4096,
        "its identity (first 4 KiB) changes as it grows"
    );
    let cut = full.find("R5,").unwrap() + 4;
    let path = env.drop_bytes("small.csv", &full.as_bytes()[..cut]);
    let format = env.presets["sipcarrier-csv"].clone();
    let job = Job {
        feed: "feed-a",
        format: &format,
        after: After::Keep,
        marker: false,
        batch_size: 100,
        limits: wide(),
        final_tail: false,
    };
    let mut rows = Vec::new();
    let first = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert!(first.held_back);
    assert_eq!(rows.len(), 5);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&full.as_bytes()[cut..])
        .unwrap();
    let second = ingest_file(
        &path,
        &job,
        &mut env.cp,
        &mut env.q,
        &mut collect(&mut rows),
    )
    .unwrap();
    assert!(second.resumed, "found by device, inode and its old content");
    assert_eq!((second.rows_ok, second.duplicates), (5, 0));
    assert_eq!(ids(&rows)[5..], ["R5", "R6", "R7", "R8", "R9"]);
}
