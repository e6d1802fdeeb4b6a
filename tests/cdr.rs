//! Carrier CDR feeds end to end: presets through `cdr import`, bad rows to quarantine, a killed
//! daemon resuming a 100k-row file exactly once, joins to SIP calls, and privacy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Pool entries for the called numbers of the sample files (and the bulk test's number).
fn cdr_pool() -> String {
    let mut pool = String::new();
    for block in ["110", "120", "230"] {
        for n in 0..20 {
            pool.push_str(&format!(
                "\n[[numbers.pool]]\nnumber = \"+4930555{block}{n:02}\"\ncampaign = \"{POOL_CAMPAIGN}\"\n"
            ));
        }
    }
    pool
}

fn feed(spool: &Path, format: &str) -> String {
    format!(
        "\n[[cdr.feeds]]\nname = \"carrier\"\nspool_dir = \"{}\"\nglob = \"*.csv\"\nformat = \"{format}\"\nquiet_seconds = 1\nrescan_seconds = 1\n",
        spool.display()
    )
}

fn import(config: &Path, file: &Path, format: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args(["cdr", "import", "--config"])
        .arg(config)
        .arg(file)
        .args(["--format", format])
        .output()
        .unwrap()
}

/// Imports a copy of a fixture (the import moves what it ingests into the raw store).
fn import_fixture(dir: &Path, config: &Path, fixture: &str, format: &str) -> std::process::Output {
    let copy = dir.join(format!("copy-{}-{fixture}", std::process::id()));
    std::fs::copy(repo().join("fixtures/cdr").join(fixture), &copy).unwrap();
    import(config, &copy, format)
}

fn offline_config(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n{}\n{extra}",
        base_config(&dir.path().join("var")),
        cdr_pool()
    );
    let path = dir.path().join("calltrackd.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

fn completed(dir: &Path) -> Vec<serde_json::Value> {
    read_events(&dir.join("var/outbox"))
        .into_iter()
        .filter(|e| e["event_type"] == "call.completed")
        .collect()
}

#[test]
fn each_preset_sample_is_ingested_field_by_field() {
    let cases = [
        ("sipcarrier-sample.csv", "sipcarrier-csv"),
        ("sipcarrier-sample.csv.gz", "sipcarrier-csv"),
        ("telekom-sample.csv", "telekom-style"),
        ("legacy-sample.csv", "legacy-noheader"),
    ];
    for (file, format) in cases {
        let (dir, config) = offline_config("");
        let out = import_fixture(dir.path(), &config, file, format);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = completed(dir.path());
        assert!(events.len() >= 10, "{file}: {} events", events.len());
        for e in &events {
            assert_eq!(e["campaign_id"], POOL_CAMPAIGN);
            assert!(
                e["tracking_number"]
                    .as_str()
                    .unwrap()
                    .starts_with("+4930555")
            );
            assert_eq!(e["correlated"], "none");
            assert!(
                e.get("caller_pseudonym").is_none(),
                "no SIP-side notice known: no identifier"
            );
            assert!(
                ["answered", "busy", "no_answer", "failed", "cancelled"]
                    .contains(&e["disposition"].as_str().unwrap())
            );
        }
        // Re-importing the same content (the first copy now rests in the raw store) is
        // recognised.
        let again = import_fixture(dir.path(), &config, file, format);
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("already ingested"),
            "{file}"
        );
        assert_eq!(
            completed(dir.path()).len(),
            events.len(),
            "{file}: exactly once"
        );
    }
    // Spot checks on the SIP-carrier sample: the first row.
    let (dir, config) = offline_config("");
    import_fixture(
        dir.path(),
        &config,
        "sipcarrier-sample.csv",
        "sipcarrier-csv",
    );
    let first = &completed(dir.path())[0];
    assert_eq!(first["tracking_number"], "+493055511000");
    assert_eq!(first["answered_at"], "2024-05-02T08:00:08.000Z");
    // The row says 08:01:01.631; events carry whole seconds unless `time_precision = "ms"`.
    assert_eq!(first["ended_at"], "2024-05-02T08:01:01.000Z");
    assert_eq!(first["occurred_at"], "2024-05-02T08:01:01.000Z");
    assert_eq!(first["duration_seconds"], 54);
    assert_eq!(first["disposition"], "answered");
}

#[test]
fn cdr_times_keep_milliseconds_or_lose_seconds_as_configured() {
    for (precision, answered, ended) in [
        ("ms", "2024-05-02T08:00:08.000Z", "2024-05-02T08:01:01.631Z"),
        (
            "minute",
            "2024-05-02T08:00:00.000Z",
            "2024-05-02T08:01:00.000Z",
        ),
    ] {
        let (dir, config) =
            offline_config(&format!("[privacy]\ntime_precision = \"{precision}\"\n"));
        import_fixture(
            dir.path(),
            &config,
            "sipcarrier-sample.csv",
            "sipcarrier-csv",
        );
        let first = &completed(dir.path())[0];
        assert_eq!(first["answered_at"], answered, "{precision}");
        assert_eq!(first["ended_at"], ended, "{precision}");
        assert_eq!(first["occurred_at"], ended, "{precision}");
    }
}

#[test]
fn malformed_rows_are_quarantined_and_the_rest_ingested() {
    let (dir, config) = offline_config("");
    let file = dir.path().join("mixed.csv");
    let good = |i: u32| {
        format!(
            "R{i},,2026-11-24T07:00:00Z,2026-11-24T07:00:05Z,2026-11-24T07:01:05Z,60000,+4917612345678,+493055511000,200,tg\n"
        )
    };
    let mut text = String::from(
        "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n",
    );
    for i in 0..5 {
        text.push_str(&good(i));
    }
    text.push_str("BAD1,,not-a-time,,,,+4917612345678,+493055511000,200,tg\n"); // line 7
    text.push_str("BAD2,,2026-11-24T07:00:00Z,,,,+4917612345678,+493055511000,999,tg\n"); // line 8
    text.push_str("BAD3,,2026-11-24T07:00:00Z,2026-11-24T07:00:05Z,2026-11-24T07:01:05Z,60000,+4917612345678,garbage,200,tg\n"); // line 9
    for i in 5..10 {
        text.push_str(&good(i));
    }
    std::fs::write(&file, text).unwrap();
    let out = import(&config, &file, "sipcarrier-csv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(completed(dir.path()).len(), 10, "every good row");
    let qdir = dir.path().join("var/cdr/quarantine");
    let mut entries = Vec::new();
    for f in std::fs::read_dir(&qdir).unwrap() {
        let f = f.unwrap().path();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            entries.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
        }
    }
    let mut lines: Vec<u64> = entries
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, vec![7, 8, 9], "{entries:#?}");
    for e in &entries {
        assert!(e["file"].as_str().unwrap().ends_with("mixed.csv"), "{e}");
        assert!(!e["reason"].as_str().unwrap().is_empty());
    }
}

#[test]
fn killed_mid_file_the_daemon_resumes_and_every_row_lands_exactly_once() {
    const ROWS: usize = 100_000;
    let staging = tempfile::tempdir().unwrap();
    let bulk = staging.path().join("bulk.csv");
    write_bulk(&bulk, ROWS, "+49176");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let config = format!(
        "{}\n{}\n{}",
        base_config(&dir.path().join("var")),
        cdr_pool(),
        feed(&spool, "sipcarrier-csv")
    );
    let mut daemon = Daemon::start_with(dir, &config);
    // Atomic arrival, as carriers deliver: rename into the spool.
    std::fs::rename(&bulk, spool.join("bulk.csv")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while daemon.events().len() < 10_000 {
        assert!(Instant::now() < deadline, "ingest did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill();
    let at_kill = daemon.events().len();
    assert!(at_kill < ROWS, "killed mid-file ({at_kill} rows in)");
    let daemon = daemon.restart();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = daemon.events().len();
        if n >= ROWS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of {ROWS} after restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let events = daemon.events();
    assert_eq!(events.len(), ROWS, "no row twice");
    let mut keys: Vec<&str> = events
        .iter()
        .map(|e| e["call_key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), ROWS, "every row once");
}

#[test]
fn cdr_rows_join_their_sip_calls_by_call_id_and_by_heuristic() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let legacy_spool = dir.path().join("spool-legacy");
    std::fs::create_dir_all(&legacy_spool).unwrap();
    let legacy_feed = feed(&legacy_spool, "legacy-noheader")
        .replace("\"carrier\"", "\"legacy\"")
        .replace("*.csv", "*.txt");
    let config = format!(
        "{}\n{}\n{legacy_feed}",
        base_config(&dir.path().join("var")),
        feed(&spool, "sipcarrier-csv")
    );
    let daemon = Daemon::start_with(dir, &config);
    // Three announced calls with Call-IDs we choose, as the carrier's SBC would export them.
    let out = sipp(
        "uac_redirect.xml",
        "u1",
        daemon.addr,
        POOL_NUMBER,
        &["-m", "3", "-cid_str", "corr-%u@sbc.test"],
    );
    assert_sipp_ok(&out, "3 calls");
    let sip = daemon.wait_events(9);
    let offered: Vec<&serde_json::Value> = sip
        .iter()
        .filter(|e| e["event_type"] == "call.offered")
        .collect();
    assert_eq!(offered.len(), 3);
    let now = chrono::Utc::now();
    let t = |s: i64| {
        (now + chrono::TimeDelta::seconds(s))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let mut csv = String::from(
        "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n",
    );
    for i in 1..=3 {
        csv.push_str(&format!(
            "J{i},corr-{i}@sbc.test,{},{},{},30000,+4917612345678,{POOL_NUMBER},200,tg\n",
            t(-5),
            t(0),
            t(30)
        ));
    }
    let tmp = spool.with_file_name("joined.tmp");
    std::fs::write(&tmp, csv).unwrap();
    std::fs::rename(&tmp, spool.join("joined.csv")).unwrap();
    // The legacy carrier exports no Call-ID: the join is by number and time.
    let epoch = now.timestamp();
    let legacy = format!(
        "H1|{}|{}|{}|+4917612345678|{POOL_NUMBER}|ANSWERED|E1-0\n",
        epoch - 3,
        epoch,
        epoch + 40
    );
    std::fs::write(legacy_spool.join("heur.tmp"), legacy).unwrap();
    std::fs::rename(legacy_spool.join("heur.tmp"), legacy_spool.join("heur.txt")).unwrap();

    let events = daemon.wait_events(13);
    let completed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event_type"] == "call.completed")
        .collect();
    assert_eq!(completed.len(), 4, "{events:#?}");
    let sip_keys: Vec<&serde_json::Value> = offered.iter().map(|e| &e["call_key"]).collect();
    let by_call_id: Vec<_> = completed
        .iter()
        .filter(|e| e["correlated"] == "sip")
        .collect();
    assert_eq!(by_call_id.len(), 3, "{completed:#?}");
    for e in &by_call_id {
        assert!(
            sip_keys.contains(&&e["call_key"]),
            "joined to a SIP call key"
        );
        assert_eq!(e["consent"], "informed");
        assert_eq!(
            e["caller_pseudonym"], offered[0]["caller_pseudonym"],
            "the same caller pseudonym as the SIP side"
        );
    }
    let heuristic: Vec<_> = completed
        .iter()
        .filter(|e| e["correlated"] == "heuristic")
        .collect();
    assert_eq!(heuristic.len(), 1, "{completed:#?}");
    assert!(sip_keys.contains(&&heuristic[0]["call_key"]));
}

#[test]
fn raw_cdr_numbers_rest_only_in_the_quarantine() {
    let (dir, config) = offline_config("");
    let file = dir.path().join("privacy.csv");
    let text = "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n\
P1,,2026-11-24T07:00:00Z,2026-11-24T07:00:05Z,2026-11-24T07:01:05Z,60000,+4917698765432,+493055511000,200,tg\n\
P2,,bad-time,,,,+4917698765432,+493055511000,200,tg\n";
    std::fs::write(&file, text).unwrap();
    let out = import(&config, &file, "sipcarrier-csv");
    assert!(out.status.success());
    let digits = "17698765432";
    let outbox: String = read_events(&dir.path().join("var/outbox"))
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(completed(dir.path()).len(), 1);
    assert!(!outbox.contains(digits), "no raw caller number in events");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(digits) && !stderr.contains(digits),
        "nor in the command's output or log"
    );
    let quarantine: String = std::fs::read_dir(dir.path().join("var/cdr/quarantine"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(
        quarantine.contains(digits),
        "the quarantine keeps the raw row for the operator"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn clir_rows_become_withheld_events_and_their_numbers_rest_nowhere_but_the_quarantine_and_raw_store()
 {
    let (dir, config) = offline_config("");
    let fixture = repo().join("fixtures/cdr/clir-sample.csv");
    let file = dir.path().join("clir.csv");
    std::fs::copy(&fixture, &file).unwrap();
    let out = import(&config, &file, "legacy-noheader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rows: 8 ok, 0 quarantined"),
        "an empty calling cell is no longer a bad row: {stdout}"
    );
    // Rows are told apart by their end time (ended_at), which the fixture makes unique.
    let by_end: std::collections::HashMap<String, serde_json::Value> = completed(dir.path())
        .into_iter()
        .map(|e| (e["ended_at"].as_str().unwrap().to_owned(), e))
        .collect();
    assert_eq!(by_end.len(), 8);
    let ended = |epoch: i64| {
        chrono::DateTime::from_timestamp(epoch, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    for (i, withheld) in [false, true, true, true, true, true, true, true]
        .into_iter()
        .enumerate()
    {
        let i = i as i64;
        let e = &by_end[&ended(1_714_723_200 + i * 300 + 65 + i)];
        assert_eq!(e["caller_withheld"], withheld, "row 880{i}: {e}");
        if withheld {
            assert!(e.get("caller_pseudonym").is_none(), "{e}");
            assert!(e.get("caller_region").is_none(), "{e}");
        }
    }
    // The withheld numbers by their national significant number: a substring of the E.164
    // (+49…), national (0…) and digits-only (49…) forms alike.
    let withheld = [
        "3055507101",
        "3055507102",
        "3055507103",
        "3055507104",
        "3055507107",
    ];
    // The raw store holds the carrier's file itself, by design and under its retention: it
    // must be exactly the input, and is left out of the scan with the quarantine.
    let raw = dir.path().join("var/cdr/raw");
    assert_eq!(files_under(&raw), [raw.join("import/clir.csv")]);
    assert_eq!(
        std::fs::read(raw.join("import/clir.csv")).unwrap(),
        std::fs::read(&fixture).unwrap()
    );
    let quarantine = dir.path().join("var/cdr/quarantine");
    let scanned: Vec<_> = files_under(&dir.path().join("var"))
        .into_iter()
        .filter(|p| !p.starts_with(&quarantine) && !p.starts_with(&raw))
        .collect();
    assert!(
        scanned
            .iter()
            .any(|p| p.starts_with(dir.path().join("var/outbox"))),
        "the scan covers the outbox: {scanned:?}"
    );
    for path in &scanned {
        let bytes = std::fs::read(path).unwrap();
        for number in withheld {
            assert!(
                !bytes.windows(number.len()).any(|w| w == number.as_bytes()),
                "{number} found in {}",
                path.display()
            );
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    for number in withheld {
        assert!(!stdout.contains(number) && !stderr.contains(number));
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sets a file's mtime `hours` into the past.
fn age_by_hours(path: &Path, hours: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(hours * 3600))
        .unwrap();
}

#[test]
fn an_imported_file_rests_in_the_private_raw_store_until_its_retention_passes() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, config) = offline_config("");
    let file = dir.path().join("day1.csv");
    std::fs::copy(repo().join("fixtures/cdr/legacy-sample.csv"), &file).unwrap();
    // As carriers upload it: readable by everyone.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = import(&config, &file, "legacy-noheader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("raw file moved into"), "{stdout}");
    let raw = dir.path().join("var/cdr/raw");
    let stored = raw.join("import/day1.csv");
    assert!(!file.exists(), "moved, not copied");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(repo().join("fixtures/cdr/legacy-sample.csv")).unwrap()
    );
    assert_eq!(mode(&stored), 0o600);
    assert_eq!(mode(&raw.join("import")), 0o700);
    assert_eq!(mode(&raw), 0o700);
    let events = completed(dir.path()).len();
    assert_eq!(events, 16);

    // 71 hours on it stays; past 72 hours the purge at the end of the next import deletes it.
    age_by_hours(&stored, 71);
    let other = dir.path().join("day2.csv");
    std::fs::write(
        &other,
        "9001|1714723200|0|1714723210|+493055500001|+493055523000|BUSY|E1-0|0\n",
    )
    .unwrap();
    assert!(import(&config, &other, "legacy-noheader").status.success());
    assert!(stored.exists(), "within its retention");
    age_by_hours(&stored, 73);
    let third = dir.path().join("day3.csv");
    std::fs::write(
        &third,
        "9002|1714723200|0|1714723210|+493055500001|+493055523000|BUSY|E1-0|0\n",
    )
    .unwrap();
    assert!(import(&config, &third, "legacy-noheader").status.success());
    assert!(!stored.exists(), "deleted past its retention");
    assert!(raw.join("import/day2.csv").exists() && raw.join("import/day3.csv").exists());

    // The carrier sends the purged export again: recognised, not ingested twice.
    std::fs::copy(repo().join("fixtures/cdr/legacy-sample.csv"), &file).unwrap();
    let again = import(&config, &file, "legacy-noheader");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already ingested"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(completed(dir.path()).len(), events + 2);

    // --keep leaves the operator's file where it is.
    let kept = dir.path().join("day4.csv");
    std::fs::write(
        &kept,
        "9003|1714723200|0|1714723210|+493055500001|+493055523000|BUSY|E1-0|0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args([
            "cdr",
            "import",
            "--keep",
            "--format",
            "legacy-noheader",
            "--config",
        ])
        .arg(&config)
        .arg(&kept)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(kept.exists() && !raw.join("import/day4.csv").exists());
}

#[test]
fn feeds_move_ingested_files_into_their_raw_store_and_the_daemon_purges_them_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let kept_spool = dir.path().join("spool-kept");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(&kept_spool).unwrap();
    let kept_feed = format!(
        "{}after = \"keep\"\nraw_retention_hours = 1\n",
        feed(&kept_spool, "sipcarrier-csv").replace("\"carrier\"", "\"kept\"")
    );
    let config = format!(
        "{}\n{}\n{}\n{kept_feed}",
        base_config(&dir.path().join("var")),
        cdr_pool(),
        feed(&spool, "sipcarrier-csv")
    );
    let daemon = Daemon::start_with(dir, &config);
    let sample = std::fs::read(repo().join("fixtures/cdr/sipcarrier-sample.csv")).unwrap();
    // The kept feed's export differs: the checkpoints know a file by content across feeds.
    let mut other = String::from(
        "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n",
    );
    for i in 0..3 {
        other.push_str(&format!(
            "K{i},,2026-11-24T07:00:00Z,,2026-11-24T07:00:09Z,0,+493055500001,+493055511000,486,tg\n"
        ));
    }
    let arrive = |to: &Path, bytes: &[u8], aged: Option<u64>| {
        let tmp = to.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        if let Some(hours) = aged {
            age_by_hours(&tmp, hours);
        }
        std::fs::rename(&tmp, to).unwrap();
    };
    arrive(&spool.join("moved.csv"), &sample, None);
    // Two hours old on arrival, so past the kept feed's one hour once ingested.
    arrive(&kept_spool.join("kept.csv"), other.as_bytes(), Some(2));
    // Matches the glob but does not fit the format: never ingested, so never purged.
    let unread = kept_spool.join("unread.csv");
    std::fs::write(&unread, "cdr_id,setup_time\nX,2024-05-02T08:00:00Z\n").unwrap();
    age_by_hours(&unread, 2);

    let store = daemon.data_dir().join("cdr/raw/carrier");
    let stored = store.join("moved.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    // The log line follows the kept file's final checkpoint: `restart` is a SIGKILL, and a
    // kill between its events and its checkpoint would leave it for the next hourly purge.
    while !stored.exists()
        || daemon.events().len() < 17
        || !daemon.log().contains("CDR file ingested. feed=kept")
    {
        assert!(Instant::now() < deadline, "not ingested:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!spool.join("moved.csv").exists());
    assert_eq!(mode(&stored), 0o600);
    assert_eq!(mode(&store), 0o700);
    assert!(kept_spool.join("kept.csv").exists(), "after = keep");
    assert!(!daemon.data_dir().join("cdr/raw/kept").exists());

    // Past the default 72 hours; the daemon's purge runs at start (and hourly).
    age_by_hours(&stored, 73);
    let daemon = daemon.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored.exists() || kept_spool.join("kept.csv").exists() {
        assert!(Instant::now() < deadline, "not purged:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        unread.exists(),
        "a file never ingested is not the purge's to delete"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(daemon.events().len(), 17, "nothing ingested twice");
    let log = daemon.log();
    assert!(
        log.contains("Raw CDR files past their retention deleted."),
        "{log}"
    );
}

#[test]
fn check_config_warns_about_a_feed_that_keeps_raw_files_for_good() {
    let check = |after: &str| {
        let (dir, config) = offline_config(&format!(
            "{}{after}",
            feed(Path::new("/srv/spool"), "sipcarrier-csv")
        ));
        let out = Command::new(env!("CARGO_BIN_EXE_calltrackd"))
            .arg("check-config")
            .arg(&config)
            .output()
            .unwrap();
        drop(dir);
        assert!(out.status.success(), "{after}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warned = check("after = \"keep\"\n");
    assert!(warned.contains("warning:"), "{warned}");
    assert!(warned.contains("cdr.feeds[0].after"), "{warned}");
    assert!(warned.contains("raw_retention_hours"), "{warned}");
    assert!(
        !warned.contains("/srv/spool"),
        "no config value echoed: {warned}"
    );
    for fine in [
        "",
        "after = \"keep\"\nraw_retention_hours = 48\n",
        "after = \"move\"\ndone_dir = \"/srv/done\"\n",
        "after = \"delete\"\n",
    ] {
        let stderr = check(fine);
        assert!(!stderr.contains("warning"), "{fine}: {stderr}");
    }
}

const SIPCARRIER_HEADER: &str = "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n";

/// `n` good SIP-carrier rows for the pool's +493055511000, ids `{prefix}0...`.
fn good_rows(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{prefix}{i},\"c-{prefix}{i}\",2026-11-24T07:00:00Z,2026-11-24T07:00:05Z,2026-11-24T07:01:05Z,60000,+4917612345678,+493055511000,200,tg\n"
            )
        })
        .collect()
}

fn quarantine_entries(data: &Path) -> Vec<serde_json::Value> {
    let mut entries = Vec::new();
    let Ok(dir) = std::fs::read_dir(data.join("cdr/quarantine")) else {
        return entries;
    };
    for f in dir {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        entries.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
    }
    entries
}

#[test]
fn an_unbalanced_quote_in_row_3_of_10_costs_that_row_only() {
    let (dir, config) = offline_config("");
    let file = dir.path().join("quote.csv");
    let rows = good_rows("Q", 10).replacen("\"c-Q2\"", "\"c-Q2", 1);
    std::fs::write(&file, format!("{SIPCARRIER_HEADER}{rows}")).unwrap();
    let out = import(&config, &file, "sipcarrier-csv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(completed(dir.path()).len(), 9, "every other row");
    let q = quarantine_entries(&dir.path().join("var"));
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["line"], 4, "row 3 is on line 4, after the header");
    assert_eq!(q[0]["reason"], "unbalanced quote");
}

#[test]
fn a_gzip_bomb_is_quarantined_and_the_daemon_goes_on_with_the_next_file() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let config = format!(
        "{}\n{}\n{}",
        base_config(&dir.path().join("var")),
        cdr_pool(),
        feed(&spool, "sipcarrier-csv")
    );
    let daemon = Daemon::start_with(dir, &config);
    // A header, one row, then 256 MiB of one byte: about 1000:1, 256 KiB on disk.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(SIPCARRIER_HEADER.as_bytes()).unwrap();
    gz.write_all(good_rows("G", 1).as_bytes()).unwrap();
    let block = vec![b'9'; 1024 * 1024];
    for _ in 0..256 {
        gz.write_all(&block).unwrap();
    }
    let staged = spool.with_file_name("bomb.tmp");
    std::fs::write(&staged, gz.finish().unwrap()).unwrap();
    std::fs::rename(&staged, spool.join("a-bomb.csv")).unwrap();
    let staged = spool.with_file_name("next.tmp");
    std::fs::write(&staged, format!("{SIPCARRIER_HEADER}{}", good_rows("N", 3))).unwrap();
    std::fs::rename(&staged, spool.join("b-next.csv")).unwrap();
    let events = daemon.wait_events(4);
    assert_eq!(
        events.len(),
        4,
        "the bomb's one row and the next file's three"
    );
    let q = quarantine_entries(&daemon.data_dir());
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(
        q[0]["reason"],
        "gzip stream expands more than max_gzip_ratio; the rest of the file is not read"
    );
    assert_eq!(q[0]["line"], 3);
    let status = daemon.status(false);
    assert!(status.status.success(), "the daemon still answers");
    assert!(!daemon.log().contains("panicked"));
}

#[test]
fn a_file_appended_to_after_it_was_ingested_delivers_the_new_rows_once() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let keep = feed(&spool, "sipcarrier-csv") + "after = \"keep\"\nraw_retention_hours = 24\n";
    let config = format!(
        "{}\n{}\n{keep}",
        base_config(&dir.path().join("var")),
        cdr_pool(),
    );
    let daemon = Daemon::start_with(dir, &config);
    let path = spool.join("day.csv");
    // Over 4 KiB, as a day's file is: the append keeps the file's identity.
    std::fs::write(&path, format!("{SIPCARRIER_HEADER}{}", good_rows("A", 40))).unwrap();
    assert_eq!(daemon.wait_events(40).len(), 40);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(good_rows("B", 5).as_bytes())
        .unwrap();
    assert_eq!(daemon.wait_events(45).len(), 45);
    // Give a wrong second reading time to show.
    std::thread::sleep(Duration::from_secs(3));
    let events = completed(daemon.dir.path());
    assert_eq!(events.len(), 45, "each row once");
    let mut keys: Vec<&str> = events
        .iter()
        .map(|e| e["call_key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 45);
}

#[test]
fn a_last_line_without_newline_is_read_once_the_file_stayed_unchanged_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let held = feed(&spool, "sipcarrier-csv") + "tail_quiet_seconds = 4\n";
    let config = format!(
        "{}\n{}\n{held}",
        base_config(&dir.path().join("var")),
        cdr_pool(),
    );
    let daemon = Daemon::start_with(dir, &config);
    let rows = good_rows("T", 3);
    let staged = spool.with_file_name("tail.tmp");
    std::fs::write(&staged, format!("{SIPCARRIER_HEADER}{}", rows.trim_end())).unwrap();
    let arrived = Instant::now();
    std::fs::rename(&staged, spool.join("tail.csv")).unwrap();
    assert_eq!(daemon.wait_events(2).len(), 2);
    if arrived.elapsed() < Duration::from_secs(3) {
        assert_eq!(daemon.events().len(), 2, "the last line waits");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.events().len() < 3 {
        assert!(Instant::now() < deadline, "the last line was never read");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        arrived.elapsed() >= Duration::from_secs(4),
        "read only after tail_quiet_seconds"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!spool.join("tail.csv").exists(), "then finished and moved");
    assert!(quarantine_entries(&daemon.data_dir()).is_empty());
}
