//! The daemon's feed loop against a real outbox: a file refused because the outbox is full is
//! ingested once space returns, without a restart or a change to the file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::call::{CallerPolicy, Keyring, Normalizer, Policy, Recorder, Rotation};
use crate::cdr::format::builtin_presets;
use crate::outbox::Options;

const TRACKING: &str = "+493055511000";

fn feed(spool: &Path) -> Feed {
    toml::from_str(&format!(
        "name = \"carrier\"\nspool_dir = \"{}\"\nglob = \"*.csv\"\nformat = \"sipcarrier-csv\"\nafter = \"keep\"\nraw_retention_hours = 1\nquiet_seconds = 1\nrescan_seconds = 1\n",
        spool.display()
    ))
    .unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_file_refused_by_a_full_outbox_is_ingested_once_space_returns() {
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let outbox = crate::outbox::Outbox::open(
        data.path().join("outbox"),
        Options {
            segment_bytes: 4096,
            max_bytes: 16 * 1024,
            ..Options::default()
        },
    )
    .unwrap();
    // Fill it with other events until it refuses.
    let filler = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    let mut filled = 0;
    while rt
        .block_on(outbox.append_batch(&[filler.as_bytes()]))
        .is_ok()
    {
        filled += 1;
    }
    assert!(filled >= 10, "{filled} filler events");
    rt.block_on(outbox.flush()).unwrap();

    let normalizer = Normalizer::new("DE").unwrap();
    let keyring = Keyring::open(&data.path().join("keys"), Rotation::Monthly).unwrap();
    let policy = Policy {
        caller: CallerPolicy::default(),
        region_digits: Some(2),
    };
    let recorder = Recorder::new(keyring, normalizer.clone(), HashMap::new(), policy);
    let pool = HashMap::from([(TRACKING.to_owned(), "c".to_owned())]);
    let completer = Completer::new(
        Arc::new(recorder),
        normalizer,
        pool,
        TimeDelta::seconds(120),
    );
    let feeds = vec![feed(spool.path())];
    let ingestor = Arc::new(
        Ingestor::open(
            data.path(),
            TimeDelta::days(14),
            completer,
            outbox.clone(),
            builtin_presets().unwrap(),
            &feeds,
        )
        .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let task = rt.spawn(run(ingestor.clone(), feeds, shutdown.clone()));

    let start = (Utc::now() - TimeDelta::minutes(5)).format("%Y-%m-%dT%H:%M:%SZ");
    let mut text = String::from(
        "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n",
    );
    for i in 0..3 {
        text.push_str(&format!(
            "F{i},c{i},{start},,,0,+4917612345678,{TRACKING},486,tg\n"
        ));
    }
    let staged = data.path().join("day.tmp");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, spool.path().join("day.csv")).unwrap();

    let c = &ingestor.counts;
    let counts = || {
        format!(
            "failed {} ingested {} events {} rows {} refused {} ignored {} quarantined {}",
            c.files_failed.get(),
            c.files_ingested.get(),
            c.events.get(),
            c.rows_ok.get(),
            c.refused.get(),
            c.ignored.get(),
            c.rows_quarantined.get()
        )
    };
    wait_for("the refusal", || ingestor.counts.files_failed.get() >= 1);
    assert_eq!(ingestor.counts.events.get(), 0, "{}", counts());
    // Space returns: retention takes the filler segments.
    for entry in std::fs::read_dir(outbox.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
                .unwrap();
        }
    }
    assert!(outbox.apply_age_retention(Duration::from_secs(60)).unwrap() > 0);
    // The retry (after 5 s) goes through; the file itself never changed.
    wait_for("the retry", || ingestor.counts.files_ingested.get() == 1);
    assert_eq!(ingestor.counts.files_failed.get(), 1, "{}", counts());
    assert_eq!(ingestor.counts.events.get(), 3);
    assert_eq!(ingestor.counts.rows_ok.get(), 3);
    // Once: nothing is retried after the success.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(ingestor.counts.events.get(), 3);
    assert_eq!(ingestor.counts.files_ingested.get(), 1);
    shutdown.cancel();
    rt.block_on(task).unwrap();
}
