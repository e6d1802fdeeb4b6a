#![allow(clippy::unwrap_used)]
//! The Kafka forwarder against a real broker (tansu on loopback): every event arrives, in order
//! per call, through broker restarts, forwarder crashes and shutdowns.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use calltrackd::outbox::{Options, Outbox, Position};
use calltrackd::sink::{Forwarder, ForwarderReport, Kafka, Stats};
use common::tansu::{Msg, Tansu, consume};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "call-events";
const WAIT: Duration = Duration::from_secs(60);

/// A realistic event line; `i` picks the call (`calls` of them) so each call gets several events.
fn event(i: u64, calls: u64) -> (String, String) {
    let id = uuid::Uuid::now_v7().to_string();
    let call = format!("ck-{:04}", i % calls);
    let kind = ["call.offered", "call.redirected", "call.ended"][(i % 3) as usize];
    let line = format!(
        r#"{{"event_id":"{id}","event_type":"{kind}","schema_version":1,"key_id":"k2026","call_key":"{call}","campaign":"spring","occurred_at":"2026-11-24T07:00:00.000Z","seq":{i}}}"#
    );
    (id, line)
}

struct Log {
    /// event_id -> (position, call_key)
    ids: HashMap<String, (u64, String)>,
    next: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            ids: HashMap::new(),
            next: 0,
        }
    }

    async fn append(&mut self, outbox: &Outbox, n: u64, calls: u64) {
        let mut lines = Vec::new();
        for _ in 0..n {
            let (id, line) = event(self.next, calls);
            let call = format!("ck-{:04}", self.next % calls);
            self.ids.insert(id, (self.next, call));
            self.next += 1;
            lines.push(line);
        }
        for chunk in lines.chunks(500) {
            let refs: Vec<&[u8]> = chunk.iter().map(|l| l.as_bytes()).collect();
            outbox.append_batch(&refs).await.unwrap();
        }
    }
}

struct Checked {
    /// Positions of events that arrived more than once.
    duplicates: Vec<u64>,
}

/// Every appended event arrived with the right key and headers; per call the first arrivals
/// are in append order; returns the duplicates.
fn check(log: &Log, msgs: &[Msg]) -> Checked {
    let mut seen = HashSet::new();
    let mut duplicates = Vec::new();
    let mut last_per_key: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut partition_of: HashMap<Vec<u8>, i32> = HashMap::new();
    for m in msgs {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let id = v["event_id"].as_str().unwrap().to_owned();
        let (pos, call) = log.ids.get(&id).expect("only appended events arrive");
        assert_eq!(m.key.as_deref(), Some(call.as_bytes()), "key is call_key");
        assert_eq!(
            m.header("event-type"),
            v["event_type"].as_str().map(str::as_bytes)
        );
        assert_eq!(m.header("schema-version"), Some(&b"1"[..]));
        assert_eq!(m.header("key-id"), Some(&b"k2026"[..]));
        let p = *partition_of
            .entry(call.as_bytes().to_vec())
            .or_insert(m.partition);
        assert_eq!(p, m.partition, "one call, one partition");
        if !seen.insert(id) {
            duplicates.push(*pos);
            continue;
        }
        if let Some(prev) = last_per_key.insert(call.as_bytes().to_vec(), *pos) {
            assert!(prev < *pos, "call {call}: event {pos} arrived after {prev}");
        }
    }
    assert_eq!(seen.len(), log.ids.len(), "every event arrived");
    Checked { duplicates }
}

fn kafka(t: &Tansu) -> Kafka {
    let mut k = Kafka::new(t.bootstrap());
    k.batch_events = 2000;
    k.flush_timeout_ms = 10_000;
    // Reconnect quickly after a broker restart.
    k.properties
        .insert("reconnect.backoff.max.ms".into(), "500".into());
    k
}

struct Running {
    stats: std::sync::Arc<Stats>,
    stop: CancellationToken,
    task: JoinHandle<ForwarderReport>,
}

fn start(outbox: &Outbox, k: &Kafka) -> Running {
    let f = Forwarder::new(outbox.clone(), k).unwrap();
    let stats = f.stats();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { f.run(token).await.unwrap() });
    Running { stats, stop, task }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn committed(outbox: &Outbox) -> u64 {
    let text = std::fs::read_to_string(outbox.dir().join("readers/kafka.pos")).unwrap_or_default();
    text.trim().parse().unwrap_or(0)
}

fn setup(partitions: u32) -> (Tansu, tempfile::TempDir, Outbox) {
    let t = Tansu::start();
    t.create_topic(TOPIC, partitions);
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path().join("outbox"), Options::default()).unwrap();
    (t, dir, outbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_with_key_headers_and_call_order() {
    const N: u64 = 3000;
    let (t, _dir, outbox) = setup(3);
    let mut log = Log::new();
    log.append(&outbox, N, 97).await;
    let r = start(&outbox, &kafka(&t));
    wait_until("all acked", || committed(&outbox) == N).await;
    r.stop.cancel();
    let report = r.task.await.unwrap();
    assert_eq!(report.committed, Position(N));
    assert_eq!(report.acked, N);
    assert_eq!(report.backlog, 0);
    // Asking for one more than was sent: the read runs to its deadline, so a duplicate or a
    // stray message would show up.
    let msgs = consume(
        &t.bootstrap(),
        TOPIC,
        N as usize + 1,
        Duration::from_secs(30),
    );
    assert_eq!(msgs.len() as u64, N);
    let c = check(&log, &msgs);
    assert!(c.duplicates.is_empty(), "duplicates: {:?}", c.duplicates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing_and_keeps_call_order() {
    let (mut t, _dir, outbox) = setup(3);
    let mut log = Log::new();
    log.append(&outbox, 2000, 50).await;
    let r = start(&outbox, &kafka(&t));
    wait_until("first part committed", || committed(&outbox) == 2000).await;
    t.stop();
    log.append(&outbox, 2000, 50).await;
    // The forwarder notices: the gauge shows the backlog while the broker is away.
    wait_until("backlog gauge", || r.stats.backlog() >= 2000).await;
    t.restart();
    wait_until("second part committed", || committed(&outbox) == 4000).await;
    r.stop.cancel();
    let report = r.task.await.unwrap();
    assert_eq!(report.committed, Position(4000));
    let msgs = consume(&t.bootstrap(), TOPIC, 4000, WAIT);
    let c = check(&log, &msgs);
    assert!(c.duplicates.is_empty(), "duplicates: {:?}", c.duplicates);
    assert_eq!(msgs.len(), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_killed_before_commit_resends_and_only_uncommitted_events_repeat() {
    let (t, _dir, outbox) = setup(3);
    let mut log = Log::new();
    log.append(&outbox, 2000, 100).await;
    let k = kafka(&t);
    let r = start(&outbox, &k);
    wait_until("first part acked", || r.stats.acked() >= 2000).await;
    // Like SIGKILL right after the acks: no drain, no final commit (commits run every 200 ms,
    // so the last acks are usually not committed yet).
    r.task.abort();
    let _ = r.task.await;
    let at_crash = committed(&outbox);
    log.append(&outbox, 2000, 100).await;

    let r = start(&outbox, &k);
    wait_until("all committed", || committed(&outbox) == 4000).await;
    r.stop.cancel();
    let report = r.task.await.unwrap();
    assert_eq!(
        report.published,
        4000 - at_crash,
        "resumes at the committed position"
    );
    let msgs = consume(
        &t.bootstrap(),
        TOPIC,
        4000 + (2000 - at_crash as usize),
        WAIT,
    );
    let c = check(&log, &msgs);
    assert!(
        c.duplicates.iter().all(|&p| p >= at_crash && p < 2000),
        "only acknowledged but uncommitted events may repeat"
    );
    assert_eq!(
        c.duplicates.len() as u64,
        2000 - at_crash,
        "each of them exactly twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_in_flight_events_and_commits_them() {
    let (t, _dir, outbox) = setup(2);
    let mut log = Log::new();
    log.append(&outbox, 5000, 40).await;
    let mut k = kafka(&t);
    k.batch_events = 10_000;
    let r = start(&outbox, &k);
    // Cancel as soon as everything is handed to the producer, before it is all acknowledged.
    wait_until("all published", || r.stats.published() >= 5000).await;
    r.stop.cancel();
    let report = r.task.await.unwrap();
    assert!(report.flushed);
    assert_eq!(report.acked, 5000);
    assert_eq!(report.committed, Position(5000));
    assert_eq!(committed(&outbox), 5000, "commit is on disk");
    let msgs = consume(&t.bootstrap(), TOPIC, 5000, WAIT);
    assert!(check(&log, &msgs).duplicates.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_while_running_are_forwarded_and_restart_resumes() {
    let (t, _dir, outbox) = setup(3);
    let mut log = Log::new();
    let k = kafka(&t);
    let r = start(&outbox, &k);
    for _ in 0..5 {
        log.append(&outbox, 100, 7).await;
    }
    wait_until("live appends committed", || committed(&outbox) == 500).await;
    r.stop.cancel();
    let first = r.task.await.unwrap();
    assert_eq!(first.committed, Position(500));

    log.append(&outbox, 300, 7).await;
    let r = start(&outbox, &k);
    wait_until("resumed", || committed(&outbox) == 800).await;
    r.stop.cancel();
    let second = r.task.await.unwrap();
    assert_eq!(
        second.published, 300,
        "a restart sends only what was not committed"
    );
    let msgs = consume(&t.bootstrap(), TOPIC, 800, WAIT);
    assert!(check(&log, &msgs).duplicates.is_empty());
}
