//! Throughput of the Kafka forwarder against a plain rdkafka `FutureProducer` with the same
//! settings, on the same broker (run by `bench/kafka_throughput.sh` against tansu on loopback).
//!
//! Usage: kafka_bench <bootstrap> <forwarder topic> <plain topic> [events] [order]
//! `order` is `fwd-first` (default) or `plain-first`.

use std::time::{Duration, Instant};

use calltrackd::outbox::{Options, Outbox};
use calltrackd::sink::{Forwarder, Kafka, Meta};
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

/// A realistic ~400-byte event line.
fn event(i: u64) -> String {
    let id = uuid::Uuid::now_v7();
    let call = uuid::Uuid::now_v7().simple().to_string();
    let kind = [
        "call.offered",
        "call.redirected",
        "call.answered",
        "call.ended",
    ][(i % 4) as usize];
    format!(
        concat!(
            r#"{{"event_id":"{id}","event_type":"{kind}","schema_version":1,"key_id":"k-2026-11","#,
            r#""call_key":"{call}","occurred_at":"2026-11-24T07:00:00.123456Z","#,
            r#""campaign":"winter-radio","tracking_number":"tn_7f3a9c21","#,
            r#""destination":"dst_0042","caller_region":"DE-BY","caller_kind":"mobile","#,
            r#""pseudonym":"p_9a8b7c6d5e4f3a2b","sip_response":302,"#,
            r#""duration_ms":{dur},"seq":{i}}}"#
        ),
        id = id,
        kind = kind,
        call = &call[..24],
        dur = (i * 7919) % 600_000,
        i = i
    )
}

fn kafka(bootstrap: &str, topic: &str) -> Kafka {
    let mut k = Kafka::new(bootstrap);
    k.topic = topic.to_owned();
    k
}

async fn forwarder(lines: &[String], bootstrap: &str, topic: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let outbox = Outbox::open(dir.path(), Options::default()).expect("open outbox");
    for chunk in lines.chunks(1000) {
        let refs: Vec<&[u8]> = chunk.iter().map(|l| l.as_bytes()).collect();
        outbox.append_batch(&refs).await.expect("append");
    }
    let n = lines.len() as u64;
    let f = Forwarder::new(outbox.clone(), &kafka(bootstrap, topic)).expect("forwarder");
    let stats = f.stats();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let start = Instant::now();
    let task = tokio::spawn(async move { f.run(token).await });
    while stats.acked() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.cancel();
    let report = task.await.expect("join").expect("forwarder run");
    assert_eq!(report.committed.0, n);
    eprintln!(
        "forwarder: {n} events in {secs:.2}s, resends {}, delivery errors {}",
        report.resends, report.delivery_errors
    );
    n as f64 / secs
}

async fn plain(lines: &[String], bootstrap: &str, topic: &str, window: usize) -> f64 {
    let k = kafka(bootstrap, topic);
    let producer: FutureProducer = k
        .client_config()
        .expect("config")
        .create()
        .expect("producer");
    let start = Instant::now();
    let mut flight = FuturesUnordered::new();
    let mut acked = 0u64;
    for line in lines {
        let meta = Meta::parse(line.as_bytes()).unwrap_or_default();
        loop {
            while flight.len() >= window {
                if let Some(Ok(Ok(_))) = flight.next().await {
                    acked += 1;
                }
            }
            let mut headers = OwnedHeaders::new_with_capacity(3);
            for (key, value) in meta.headers() {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            let mut rec = FutureRecord::<str, [u8]>::to(topic)
                .payload(line.as_bytes())
                .headers(headers);
            if let Some(key) = meta.call_key.as_deref() {
                rec = rec.key(key);
            }
            match producer.send_result(rec) {
                Ok(f) => {
                    flight.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if let Some(Ok(Ok(_))) = flight.next().await {
                        acked += 1;
                    }
                }
                Err((e, _)) => panic!("send failed: {e}"),
            }
        }
    }
    while let Some(r) = flight.next().await {
        if let Ok(Ok(_)) = r {
            acked += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(acked, lines.len() as u64, "plain producer lost deliveries");
    producer.flush(Duration::from_secs(10)).expect("flush");
    eprintln!("plain:     {} events in {secs:.2}s", lines.len());
    lines.len() as f64 / secs
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, fwd_topic, plain_topic, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: kafka_bench <bootstrap> <forwarder topic> <plain topic> [events] [order]"
        );
        std::process::exit(2);
    };
    let n: u64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(500_000);
    let plain_first = rest.get(1).is_some_and(|s| s == "plain-first");
    let lines: Vec<String> = (0..n).map(event).collect();
    let avg = lines.iter().map(String::len).sum::<usize>() / lines.len().max(1);
    eprintln!("{n} events, {avg} bytes on average");
    let window = Kafka::new("x").batch_events;
    // tansu gets faster after its first few seconds of load (SQLite warm-up), which would favour
    // whichever side runs second: warm it up untimed first.
    let warm = lines.len().min(50_000);
    eprint!("warm-up ");
    plain(&lines[..warm], bootstrap, plain_topic, window).await;
    let (fwd, pl) = if plain_first {
        let pl = plain(&lines, bootstrap, plain_topic, window).await;
        (forwarder(&lines, bootstrap, fwd_topic).await, pl)
    } else {
        let fwd = forwarder(&lines, bootstrap, fwd_topic).await;
        (fwd, plain(&lines, bootstrap, plain_topic, window).await)
    };
    println!("forwarder_events_per_s {fwd:.0}");
    println!("plain_events_per_s {pl:.0}");
    println!("ratio {:.3}", fwd / pl);
}
