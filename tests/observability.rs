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
        missing.contains("serves GET /metrics, GET /health and GET /ready"),
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

/// Every `calltrackd_…` name in the shipped alert rules and Grafana dashboard.
fn contrib_metric_names() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for file in [
        "contrib/prometheus/calltrackd.rules.yml",
        "contrib/grafana/calltrackd.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("calltrackd_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_alert_rules_and_dashboard_use_only_metrics_the_daemon_exports() {
    let (daemon, _spool) = daemon();
    let body = daemon.http_get("/metrics");
    let exported: std::collections::BTreeSet<&str> = body
        .lines()
        .filter(|l| l.starts_with("calltrackd_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let names = contrib_metric_names();
    assert!(names.len() > 15, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let dir = repo().join("contrib/prometheus");
    for args in [
        ["check", "rules", "calltrackd.rules.yml"],
        ["test", "rules", "calltrackd.rules.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian package prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Prometheus itself on loopback, scraping the daemon with the shipped rules loaded.
#[test]
fn a_real_prometheus_scrapes_the_endpoint_and_loads_the_rules() {
    let (daemon, _spool) = daemon();
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "call");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = daemon.listening("metrics").unwrap();
    let rules = repo().join("contrib/prometheus/calltrackd.rules.yml");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: calltrackd\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let _prometheus = KillOnDrop(
        std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)"),
    );
    let query = |q: &str| -> Option<serde_json::Value> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {q} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let value = loop {
        let answer = query("/api/v1/query?query=calltrackd_calls_redirected_total");
        let value = answer.as_ref().and_then(|a| {
            a["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned)
        });
        if let Some(v) = value {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped us: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value, "1", "the call Prometheus scraped");
    let up = query("/api/v1/query?query=up").unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1");
    let rules = loop {
        let rules = query("/api/v1/rules").unwrap();
        let group = &rules["data"]["groups"][0]["rules"];
        if group.as_array().is_some_and(|r| {
            r.iter().all(|rule| {
                rule["health"] == "ok" && rule["lastEvaluation"] != "0001-01-01T00:00:00Z"
            })
        }) {
            break group.clone();
        }
        assert!(Instant::now() < deadline, "rules not evaluated: {rules}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(rules.as_array().unwrap().len(), 11);
}

/// A child process that goes when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
