//! What an operator watches, against the built daemon: `calltrackd status` over the control
//! socket, and the Prometheus endpoint (every component's metrics registered, histograms with
//! buckets, closed label sets, HTTP errors with a reason).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// Kafka pointed at a loopback port nobody listens on: the forwarder runs and events wait.
fn unreachable_kafka() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    format!("[kafka]\nbootstrap_servers = \"127.0.0.1:{port}\"\ntopic = \"call-events\"\n")
}

fn daemon() -> (Daemon, tempfile::TempDir) {
    let spool = tempfile::tempdir().expect("spool");
    let extra = format!(
        "[ops]\nmetrics_listen = \"127.0.0.1:0\"\n\n{}\n[[cdr.feeds]]\nname = \"carrier-a\"\nspool_dir = \"{}\"\nglob = \"*.csv\"\nformat = \"sipcarrier-csv\"\n",
        unreachable_kafka(),
        spool.path().display()
    );
    (Daemon::start(&extra), spool)
}

#[test]
fn status_shows_listeners_calls_outbox_forwarder_feeds_and_key() {
    let (daemon, _spool) = daemon();
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "call");
    daemon.wait_events(3);

    let out = daemon.status(false);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        format!("udp   {}", daemon.addr),
        format!("tcp   {}", daemon.addr),
        "0 in flight".to_owned(),
        "3 events written".to_owned(),
        "depth 3".to_owned(),
        "kafka:     running, 0 acked".to_owned(),
        "carrier-a (sipcarrier-csv)".to_owned(),
        format!("key:       {}", chrono::Utc::now().format("%Y-%m")),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains(CALLER_DIGITS), "no caller data in status");

    let out = daemon.status(true);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(json["outbox"]["depth"], 3);
    assert_eq!(json["forwarder"]["state"], "running");
    assert!(json["outbox"]["lag_seconds"].as_u64().is_some());
    let socket = daemon.data_dir().join("control.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket).expect("socket").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn status_without_a_daemon_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let config = base_config(&dir.path().join("var"));
    let path = dir.path().join("calltrackd.toml");
    std::fs::write(&path, config).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args(["status", "--config"])
        .arg(&path)
        .output()
        .expect("status");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the daemon running"), "{err}");
}

#[test]
fn every_component_registers_its_metrics_with_real_histograms() {
    let (daemon, _spool) = daemon();
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "call");
    daemon.wait_events(3);
    // The forwarder's counters are read at scrape time; give it a tick to publish.
    std::thread::sleep(Duration::from_millis(300));
    let metrics = daemon.http_get("/metrics");
    let body = metrics.split("\r\n\r\n").nth(1).unwrap_or_default();
    for name in [
        "calltrackd_sip_requests_total{method=\"INVITE\"} 1",
        "calltrackd_sip_responses_total{class=\"3xx\"} 1",
        "calltrackd_calls_redirected_total 1",
        "calltrackd_events_written_total 3",
        "calltrackd_outbox_appended_total 3",
        "calltrackd_outbox_bytes ",
        "calltrackd_outbox_max_bytes ",
        "calltrackd_outbox_poisoned 0",
        "calltrackd_kafka_published_total",
        "calltrackd_kafka_acked_total 0",
        "calltrackd_kafka_delivery_errors_total",
        "calltrackd_kafka_resends_total",
        "calltrackd_kafka_backlog 3",
        "calltrackd_kafka_client_errors_total",
        "calltrackd_kafka_unparsed_total 0",
        "calltrackd_kafka_retention_errors_total",
        "calltrackd_kafka_producer_restarts_total",
        "calltrackd_kafka_last_ack_timestamp_seconds 0",
        "calltrackd_kafka_delivery_seconds_bucket{le=",
        "calltrackd_cdr_rows_ok_total 0",
        "calltrackd_cdr_batch_seconds_bucket{le=",
        "calltrackd_sip_invite_time_to_final_seconds_bucket{le=\"0.001\",class=\"3xx\"}",
        "calltrackd_announcement_played_seconds_count 1",
        "# EOF",
    ] {
        assert!(body.contains(name), "missing {name:?} in:\n{body}");
    }
    assert!(
        metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );
    // Labels only from closed sets: no caller digits, no addresses.
    assert!(!body.contains(CALLER_DIGITS));
    assert!(!body.contains("127.0.0.1"));
}

fn raw_http(daemon: &Daemon, request: &str) -> String {
    let addr = daemon.listening("metrics").expect("metrics");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    out
}

#[test]
fn the_http_endpoint_answers_errors_with_a_reason() {
    let daemon = Daemon::start("[ops]\nmetrics_listen = \"127.0.0.1:0\"\n");
    let missing = raw_http(
        &daemon,
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(
        missing.contains("serves GET /metrics and GET /health"),
        "{missing}"
    );
    let post = raw_http(
        &daemon,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let health = raw_http(
        &daemon,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
}
