//! Fault injection against the built daemon and real peers (tansu, sipp, the UAC, a tmpfs):
//! a broker SIGKILLed mid-load, the daemon SIGKILLed mid-load and mid-CDR-file, a full disk, and
//! damaged outbox files. Every check is by event id (or by call key for the calls the UAC
//! placed); each test prints its counts and duration on stderr (`--nocapture` shows them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::tansu::{TOPIC, Tansu, broker, consume_while};
use common::uac::Uac;
use common::*;

fn event_ids(events: &[serde_json::Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// What the topic holds for a set of expected ids.
struct Delivery {
    /// Arrivals per event id (any id, expected or not).
    counts: HashMap<String, usize>,
    missing: Vec<String>,
}

impl Delivery {
    /// Arrivals beyond the first, over all ids.
    fn duplicates(&self) -> usize {
        self.counts.values().map(|n| n - 1).sum()
    }
}

/// Reads the topic from the beginning until every id in `want` arrived (bounded), then two
/// seconds more so that trailing duplicates show.
fn drain(t: &Tansu, want: &HashSet<String>) -> Delivery {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut seen = 0;
    let mut complete: Option<Instant> = None;
    consume_while(&t.bootstrap(), TOPIC, Duration::from_secs(120), |msgs| {
        for m in &msgs[seen..] {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            *counts
                .entry(v["event_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        seen = msgs.len();
        if complete.is_none() && want.iter().all(|id| counts.contains_key(id)) {
            complete = Some(Instant::now());
        }
        complete.is_none_or(|at| at.elapsed() < Duration::from_secs(2))
    });
    let missing = want
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .cloned()
        .collect();
    Delivery { counts, missing }
}

/// Waits (bounded) for `cond` on the daemon's outbox events.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn broker_sigkilled_mid_load_every_event_reaches_the_topic() {
    const CALLS: usize = 300;
    let started = Instant::now();
    let mut t = broker();
    let daemon = Daemon::start(&t.daemon_config());
    let addr = daemon.addr;
    let calls = std::thread::spawn(move || {
        let n = CALLS.to_string();
        sipp(
            "uac_redirect.xml",
            "u1",
            addr,
            QUIET_NUMBER,
            &["-m", &n, "-r", "50", "-l", &n],
        )
    });
    // Mid-load: some calls recorded (and mostly delivered), most still to come.
    wait_for("the first calls", Duration::from_secs(30), || {
        daemon.events().len() >= 100
    });
    t.kill();
    let killed_at = daemon.events().len();
    std::thread::sleep(Duration::from_secs(3));
    t.restart();
    assert_sipp_ok(&calls.join().unwrap(), "calls across the broker crash");
    let events = daemon.wait_events(2 * CALLS);
    assert_eq!(events.len(), 2 * CALLS, "two events per quiet call");
    let ids = event_ids(&events);
    assert_eq!(ids.len(), events.len(), "no event id twice in the outbox");

    let d = drain(&t, &ids);
    assert!(
        d.missing.is_empty(),
        "{} of {} events never reached the topic",
        d.missing.len(),
        ids.len()
    );
    let duplicates = d.duplicates();
    eprintln!(
        "faults: broker SIGKILL after {killed_at} events: {} events delivered, {duplicates} duplicates, {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        duplicates * 100 <= ids.len(),
        "{duplicates} duplicates exceed 1% of {}",
        ids.len()
    );
}

/// The pool entry and feed for the bulk CDR file of the daemon crash test.
fn cdr_feed(spool: &Path) -> String {
    format!(
        "\n[[numbers.pool]]\nnumber = \"+493055511000\"\ncampaign = \"{POOL_CAMPAIGN}\"\n\n[[cdr.feeds]]\nname = \"carrier\"\nspool_dir = \"{}\"\nglob = \"*.csv\"\nformat = \"sipcarrier-csv\"\nquiet_seconds = 1\nrescan_seconds = 1\n",
        spool.display()
    )
}

/// The call key the daemon derives from a Call-ID: `hex(HMAC-SHA256(key, "call-key" 0x00
/// call-id)[..16])` under the key named by the event's `key_id` (see `call::pseudonym`).
fn call_key(data_dir: &Path, key_id: &str, call_id: &str) -> String {
    use hmac::Mac;
    let key = std::fs::read(data_dir.join("keys").join(format!("{key_id}.key"))).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(b"call-key\0");
    mac.update(call_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// One UAC call to a quiet number: its Call-ID and the INVITE's final status, if one came.
fn quiet_call(addr: std::net::SocketAddr) -> (String, Option<u16>) {
    let uac = Uac::new(addr, QUIET_NUMBER);
    uac.invite("0 8 101");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some((status, method, _)) = uac.response()
            && method == "INVITE"
            && status >= 200
        {
            uac.ack();
            return (uac.call_id.clone(), Some(status));
        }
    }
    (uac.call_id.clone(), None)
}

/// Lines of the outbox containing `needle`, without parsing (cheap enough to poll while the
/// daemon ingests tens of thousands of rows on a shared CI machine).
fn count_lines(outbox: &Path, needle: &[u8]) -> usize {
    let Ok(dir) = std::fs::read_dir(outbox) else {
        return 0;
    };
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| l.windows(needle.len()).any(|w| w == needle))
                .count()
        })
        .sum()
}

fn completed(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "call.completed")
        .collect()
}

#[test]
fn daemon_sigkilled_mid_load_and_mid_cdr_file_keeps_every_redirected_call_and_every_row_once() {
    const ROWS: usize = 30_000;
    let started = Instant::now();
    let staging = tempfile::tempdir().unwrap();
    let bulk = staging.path().join("bulk.csv");
    write_bulk(&bulk, ROWS, "+49175");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let config = format!(
        "{}\n{}",
        base_config(&dir.path().join("var")),
        cdr_feed(&spool)
    );
    let mut daemon = Daemon::start_with(dir, &config);
    std::fs::rename(&bulk, spool.join("bulk.csv")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let addr = daemon.addr;
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut calls = Vec::new();
                while !stop.load(Ordering::Relaxed) && calls.len() < 2000 {
                    calls.push(quiet_call(addr));
                }
                calls
            })
        })
        .collect();
    let outbox = daemon.data_dir().join("outbox");
    wait_for(
        "calls and CDR rows under way",
        Duration::from_secs(120),
        || {
            count_lines(&outbox, b"\"call.completed\"") >= 3000
                && count_lines(&outbox, b"\"event_id\"") >= 3100
        },
    );
    daemon.kill();
    stop.store(true, Ordering::Relaxed);
    let calls: Vec<(String, Option<u16>)> = callers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let at_kill = count_lines(&outbox, b"\"call.completed\"");
    assert!(at_kill < ROWS, "killed mid-file ({at_kill} rows in)");

    let daemon = daemon.restart();
    wait_for(
        "every CDR row after the restart",
        Duration::from_secs(180),
        || count_lines(&outbox, b"\"call.completed\"") >= ROWS,
    );
    std::thread::sleep(Duration::from_millis(500));
    let events = daemon.events();
    assert_eq!(event_ids(&events).len(), events.len(), "no event twice");
    let rows = completed(&events);
    let row_keys: HashSet<&str> = rows
        .iter()
        .map(|e| e["call_key"].as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), ROWS, "no row twice");
    assert_eq!(row_keys.len(), ROWS, "every row once");

    let key_id = events[0]["key_id"].as_str().unwrap();
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *by_key.entry(e["call_key"].as_str().unwrap()).or_default() += 1;
    }
    let redirected: Vec<&String> = calls
        .iter()
        .filter(|(_, status)| *status == Some(302))
        .map(|(id, _)| id)
        .collect();
    let unanswered = calls.iter().filter(|(_, s)| s.is_none()).count();
    assert!(
        redirected.len() >= 50,
        "calls were redirected before the kill"
    );
    let lost: Vec<&&String> = redirected
        .iter()
        .filter(|id| by_key.get(call_key(&daemon.data_dir(), key_id, id).as_str()) != Some(&2))
        .collect();
    eprintln!(
        "faults: daemon SIGKILL: {} calls got 302, {unanswered} unanswered at the kill, {at_kill} of {ROWS} rows in at the kill, {:.1} s",
        redirected.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "{} redirected calls lack their two events",
        lost.len()
    );
}

/// A tmpfs of `size` mounted over a fresh directory; unmounted on drop. Needs root (CI runs as
/// root) and says so instead of passing without the check.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("var")).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path().join("var"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test needs root to mount a tmpfs (mount said: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    /// The mounted directory (the daemon's data_dir).
    fn path(&self) -> PathBuf {
        self.dir.path().join("var")
    }

    /// Writes a filler file until the file system refuses (ENOSPC).
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        for size in [1 << 20, 4096, 1] {
            while f.write_all(&vec![0u8; size]).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .status();
    }
}

/// The INVITE's statuses up to its final one (ACKed), bounded.
fn statuses(uac: &Uac) -> Vec<u16> {
    let seen = uac.invite_statuses();
    if seen.last().is_some_and(|&s| s >= 300) {
        uac.ack();
    }
    seen
}

#[test]
fn a_full_disk_refuses_new_calls_with_503_loses_nothing_and_recovers_without_restart() {
    let started = Instant::now();
    let fs = Tmpfs::mount("16m");
    let config = format!(
        "{}\n[ops]\nmetrics_listen = \"127.0.0.1:0\"\n",
        base_config(&fs.path())
    );
    let daemon = Daemon::start_with(tempfile::tempdir().unwrap(), &config);
    // The Daemon helper reads events and the config from its own directory; this one's data
    // directory is the tmpfs.
    let outbox = fs.path().join("outbox");
    let before_call = Uac::new(daemon.addr, QUIET_NUMBER);
    before_call.invite("0 8 101");
    assert_eq!(statuses(&before_call).last(), Some(&302));
    wait_for("the first call's events", Duration::from_secs(10), || {
        read_events(&outbox).len() == 2
    });

    let filler = fs.fill();
    // The segment's last page may still have room for a call or two (a real disk's block slack
    // behaves the same); those are accepted and must keep their events.
    let mut in_slack = 0;
    loop {
        let uac = Uac::new(daemon.addr, QUIET_NUMBER);
        uac.invite("0 8 101");
        match statuses(&uac).last() {
            Some(302) => in_slack += 1,
            Some(503) => break,
            other => panic!("unexpected final status {other:?}"),
        }
        assert!(in_slack < 20, "the full disk never refused a call");
    }
    wait_for(
        "the events of calls in the slack",
        Duration::from_secs(10),
        || read_events(&outbox).len() == 2 + 2 * in_slack,
    );
    let before = event_ids(&read_events(&outbox));
    let mut refused = 1;
    for number in [POOL_NUMBER, QUIET_NUMBER, POOL_NUMBER] {
        let uac = Uac::new(daemon.addr, number);
        uac.invite("0 8 101");
        let seen = statuses(&uac);
        assert!(
            !seen.contains(&183),
            "no notice for an unrecordable call: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&503), "{number}: {seen:?}");
        refused += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        event_ids(&read_events(&outbox)),
        before,
        "nothing written for refused calls, nothing lost"
    );

    assert_eq!(metric(&daemon, "calltrackd_outbox_no_space"), 1);
    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        metric(&daemon, "calltrackd_outbox_no_space"),
        0,
        "freed space noticed"
    );
    let mut accepted = Vec::new();
    for number in [POOL_NUMBER, QUIET_NUMBER] {
        let uac = Uac::new(daemon.addr, number);
        uac.invite("0 8 101");
        let seen = statuses(&uac);
        assert_eq!(
            seen.last(),
            Some(&302),
            "{number} after space returned: {seen:?}"
        );
        accepted.push(uac.call_id.clone());
    }
    let key_id = read_events(&outbox)[0]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let want: Vec<String> = accepted
        .iter()
        .map(|id| call_key(&fs.path(), &key_id, id))
        .collect();
    wait_for(
        "events of the calls after recovery",
        Duration::from_secs(10),
        || {
            let events = read_events(&outbox);
            let keys: HashSet<&str> = events
                .iter()
                .map(|e| e["call_key"].as_str().unwrap())
                .collect();
            want.iter().all(|k| keys.contains(k.as_str()))
        },
    );
    let events = read_events(&outbox);
    let after = event_ids(&events);
    assert!(
        before.is_subset(&after),
        "events accepted before the full disk kept"
    );
    assert_eq!(after.len(), events.len(), "no event twice");
    for seg in std::fs::read_dir(&outbox).unwrap() {
        let path = seg.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.is_empty() || bytes.ends_with(b"\n"),
                "segment ends with a whole line"
            );
        }
    }
    eprintln!(
        "faults: disk full: {in_slack} calls fit the last page, {refused} refused with 503, {} accepted after space returned, {} events, {:.1} s",
        accepted.len(),
        events.len(),
        started.elapsed().as_secs_f64()
    );
    drop(daemon);
}

/// Event ids of every intact line of the outbox (damaged lines are not events).
fn intact_ids(outbox: &Path) -> HashSet<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut ids = HashSet::new();
    for f in files {
        for line in std::fs::read(&f).unwrap().split(|&b| b == b'\n') {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
                ids.insert(v["event_id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

/// The sealed segments (all but the newest), oldest first.
fn sealed(outbox: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files.pop();
    files
}

/// Byte ranges of the lines of a file (without their line feeds).
fn lines_of(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            out.push(start..i);
            start = i + 1;
        }
    }
    out
}

fn metric(daemon: &Daemon, name: &str) -> u64 {
    let body = daemon.http_get("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found"))
}

#[test]
fn damaged_segments_and_position_files_are_skipped_counted_and_delivery_continues() {
    let started = Instant::now();
    let t = broker();
    let extra = format!(
        "{}\n[outbox]\nsegment_bytes = 4096\n\n[ops]\nmetrics_listen = \"127.0.0.1:0\"\n",
        t.daemon_config()
    );
    let mut daemon = Daemon::start(&extra);
    let place = |daemon: &Daemon, n: u32| place_calls(daemon, QUIET_NUMBER, n, 50, "calls");
    place(&daemon, 40);
    let first = event_ids(&daemon.wait_events(80));
    assert!(
        drain(&t, &first).missing.is_empty(),
        "delivered before the damage"
    );
    daemon.stop();

    // Power-loss damage with the daemon stopped: garbage over the middle of a line in one sealed
    // segment, a line cut short (its rest and line feed gone) in another, a torn position file.
    let outbox = daemon.data_dir().join("outbox");
    let segs = sealed(&outbox);
    assert!(segs.len() >= 3, "several sealed segments ({})", segs.len());
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let line = lines_of(&bytes)[1].clone();
    let mid = line.start + line.len() / 2;
    bytes[mid..mid + 8].copy_from_slice(b"\0\xff\0\xfe\0\xff\0\xfe");
    std::fs::write(&segs[0], &bytes).unwrap();
    let mut bytes = std::fs::read(&segs[1]).unwrap();
    let line = lines_of(&bytes)[1].clone();
    bytes.drain(line.start + line.len() / 2..=line.end);
    std::fs::write(&segs[1], &bytes).unwrap();
    let pos = outbox.join("readers/kafka.pos");

    let mut delivered = 0;
    let mut duplicates = 0;
    for (round, damage) in [&b"\xff\x00garbage"[..], b"8", b""].iter().enumerate() {
        std::fs::write(&pos, damage).unwrap();
        daemon = daemon.restart();
        place(&daemon, 10);
        let want = intact_ids(&outbox);
        let d = drain(&t, &want);
        assert!(
            d.missing.is_empty(),
            "round {round}: {} intact events missing from the topic",
            d.missing.len()
        );
        assert_eq!(
            metric(&daemon, "calltrackd_outbox_reader_position_resets_total"),
            1
        );
        // The forwarder reads everything again: the garbled line, the merged one, and the
        // position the merge left without a line (the evidence reader is past them all).
        assert_eq!(
            metric(&daemon, "calltrackd_outbox_corrupt_lines_skipped_total"),
            2
        );
        assert_eq!(
            metric(&daemon, "calltrackd_outbox_missing_lines_skipped_total"),
            1
        );
        let log = daemon.log();
        for words in [
            "Reader position file unusable; reading again from the oldest retained segment.",
            "Reader skipped a corrupt outbox line.",
            "Reader skipped records missing from a sealed outbox segment.",
        ] {
            assert!(log.contains(words), "round {round}: log lacks {words:?}");
        }
        delivered = want.len();
        duplicates = d.duplicates();
        daemon.stop();
    }
    eprintln!(
        "faults: damaged outbox: {delivered} intact events delivered, {duplicates} duplicates after three position resets (expected: resent from the oldest segment), {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
