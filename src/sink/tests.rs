#![allow(clippy::unwrap_used)]
//! The forwarder against librdkafka's in-process mock cluster: injected produce errors and a
//! broker outage must lose nothing, and the committed position must never pass an event that
//! is not in the topic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::topic_partition_list::Offset;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Forwarder, ForwarderReport, Kafka, Stats};
use crate::outbox::{Options, Outbox, Position};

const TOPIC: &str = "call-events";
const WAIT: Duration = Duration::from_secs(30);

fn line(i: u64) -> String {
    format!(
        r#"{{"event_id":"e{i:06}","event_type":"call.offered","schema_version":1,"key_id":"k1","call_key":"c{}","seq":{i}}}"#,
        i % 13
    )
}

async fn fill(outbox: &Outbox, from: u64, to: u64) {
    let lines: Vec<String> = (from..to).map(line).collect();
    let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    outbox.append_batch(&refs).await.unwrap();
}

/// The `seq` of every message in the topic, in partition-offset order per partition.
fn consume(bootstrap: &str, partitions: i32, want: usize) -> Vec<u64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "t")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < want && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.push(v["seq"].as_u64().unwrap());
        }
    }
    out
}

fn committed(outbox: &Outbox) -> u64 {
    std::fs::read_to_string(outbox.dir().join("readers/kafka.pos"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Running {
    stats: Arc<Stats>,
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

fn kafka(bootstrap: String) -> Kafka {
    let mut k = Kafka::new(bootstrap);
    k.batch_events = 64;
    k
}

/// Each seq 0..n arrived; returns how many arrived more than once.
fn all_present(seqs: &[u64], n: u64) -> usize {
    let distinct: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len() as u64, n, "every event arrived");
    assert!(distinct.iter().all(|&s| s < n));
    seqs.len() - distinct.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_produce_requests_are_resent_and_nothing_is_lost() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), Options::default()).unwrap();
    fill(&outbox, 0, 500).await;
    // Non-retriable rejections: librdkafka hands them to us as failed deliveries.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3],
    );
    let r = start(&outbox, &kafka(mock.bootstrap_servers()));
    wait_until("a delivery error", || r.stats.delivery_errors() > 0).await;
    wait_until("everything committed", || committed(&outbox) == 500).await;
    r.stop.cancel();
    let report = r.task.await.unwrap();
    assert_eq!(report.committed, Position(500));
    assert!(report.resends > 0, "failed records were sent again");
    let seqs = consume(&mock.bootstrap_servers(), 2, 500 + report.resends as usize);
    let dups = all_present(&seqs, 500);
    assert!(
        dups as u64 <= report.resends,
        "only resent records can repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_holds_the_commit_until_acknowledged() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 3, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), Options::default()).unwrap();
    fill(&outbox, 0, 100).await;
    let r = start(&outbox, &kafka(mock.bootstrap_servers()));
    wait_until("first part committed", || committed(&outbox) == 100).await;

    mock.broker_down(1).unwrap();
    fill(&outbox, 100, 300).await;
    wait_until("backlog seen", || r.stats.backlog() == 200).await;
    // While the broker is down nothing new can be acknowledged, so nothing new is committed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(committed(&outbox), 100);
    assert_eq!(r.stats.acked(), 100);

    mock.broker_up(1).unwrap();
    wait_until("everything committed", || committed(&outbox) == 300).await;
    r.stop.cancel();
    let report = r.task.await.unwrap();
    assert_eq!(report.backlog, 0);
    let seqs = consume(&mock.bootstrap_servers(), 3, 300);
    assert_eq!(
        all_present(&seqs, 300),
        0,
        "infinite librdkafka retries: no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_timeouts_are_resent_and_commit_stays_behind_the_topic() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), Options::default()).unwrap();
    let mut k = kafka(mock.bootstrap_servers());
    // An operator's finite timeout: failed deliveries come back to the forwarder.
    k.properties
        .insert("message.timeout.ms".into(), "300".into());
    mock.broker_down(1).unwrap();
    fill(&outbox, 0, 200).await;
    let r = start(&outbox, &k);
    wait_until("timeouts reported", || r.stats.delivery_errors() >= 64).await;
    assert_eq!(
        committed(&outbox),
        0,
        "nothing acknowledged, nothing committed"
    );
    mock.broker_up(1).unwrap();
    wait_until("everything committed", || committed(&outbox) == 200).await;
    r.stop.cancel();
    let report = r.task.await.unwrap();
    assert!(report.resends >= 64);
    let seqs = consume(&mock.bootstrap_servers(), 1, 200);
    // Not "first arrivals in outbox order": a record still queued in librdkafka when the broker
    // returns can be delivered before an earlier one whose timeout had just fired and which the
    // rewind resends. The promise is that nothing is lost and the commit never passes a gap.
    all_present(&seqs, 200);
}
