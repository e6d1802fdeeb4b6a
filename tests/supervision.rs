//! Supervision, readiness and shutdown, against the built daemon: a forwarder that fails is
//! restarted and delivers everything; `/ready` says what is wrong while `/health` stays up; a
//! shutdown lets calls in progress finish with the transports still answering CANCEL and ACK.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::tansu::{Msg, TOPIC, broker, consume_while};
use common::uac::Uac;
use common::*;

const METRICS: &str = "[ops]\nmetrics_listen = \"127.0.0.1:0\"\n";

/// Polls `path` until its response contains `needle` (bounded); the last response.
fn wait_http(daemon: &Daemon, path: &str, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let body = daemon.http_get(path);
        if body.contains(needle) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(daemon: &Daemon, line_start: &str) -> f64 {
    daemon
        .http_get("/metrics")
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_forwarder_that_fails_on_its_position_file_is_restarted_and_delivers_every_event() {
    let t = broker();
    let daemon = Daemon::start(&format!("{}{METRICS}", t.daemon_config()));
    place_calls(&daemon, QUIET_NUMBER, 10, 20, "quiet calls");
    assert_eq!(daemon.wait_events(20).len(), 20);
    assert!(
        wait_http(&daemon, "/ready", "ready\n", Duration::from_secs(30))
            .ends_with("\r\n\r\nready\n")
    );

    // The fault: the readers' directory becomes a file, so committing a position fails.
    let readers = daemon.data_dir().join("outbox/readers");
    let aside = daemon.data_dir().join("outbox/readers.aside");
    std::fs::rename(&readers, &aside).unwrap();
    std::fs::write(&readers, b"not a directory").unwrap();
    place_calls(&daemon, QUIET_NUMBER, 10, 20, "quiet calls");
    let failures = "calltrackd_task_failures_total{task=\"kafka forwarder\",kind=\"error\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&daemon, failures) < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metric(&daemon, failures) >= 1.0,
        "{}",
        daemon.http_get("/metrics")
    );
    let ready = wait_http(
        &daemon,
        "/ready",
        "kafka forwarder not running",
        Duration::from_secs(10),
    );
    assert!(ready.starts_with("HTTP/1.0 503"), "{ready}");
    assert!(ready.contains("kafka forwarder not running"), "{ready}");
    assert!(
        daemon.http_get("/health").ends_with("ok\n"),
        "liveness is not readiness"
    );
    let log = daemon.log();
    assert!(log.contains("Task failed; restarting it.") && log.contains("kafka forwarder"));

    // Repaired: the next restart delivers the rest, nothing lost.
    std::fs::remove_file(&readers).unwrap();
    std::fs::rename(&aside, &readers).unwrap();
    place_calls(&daemon, QUIET_NUMBER, 5, 20, "quiet calls");
    let outbox = daemon.wait_events(50);
    assert_eq!(outbox.len(), 50);
    let want: HashSet<&str> = outbox
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let ids = |msgs: &[Msg]| -> HashSet<String> {
        msgs.iter()
            .map(|m| {
                let e: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                e["event_id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let msgs = consume_while(&t.bootstrap(), TOPIC, Duration::from_secs(60), |msgs| {
        ids(msgs).len() < want.len()
    });
    let got = ids(&msgs);
    for id in &want {
        assert!(
            got.contains(*id),
            "event {id} lost; {} messages",
            msgs.len()
        );
    }
    eprintln!(
        "events {}, messages {}, duplicates {}",
        outbox.len(),
        msgs.len(),
        msgs.len() - got.len()
    );
    let ready = wait_http(&daemon, "/ready", "ready\n", Duration::from_secs(30));
    assert!(ready.ends_with("\r\n\r\nready\n"), "{ready}");
    let status = String::from_utf8(daemon.status(false).stdout).unwrap();
    assert!(status.contains("kafka forwarder (running, "), "{status}");
}

#[test]
fn ready_reports_a_stalled_delivery_and_a_full_outbox_while_health_stays_ok() {
    // Nothing listens on this port: Kafka is unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Daemon::start(&format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:{port}\"\ntopic = \"{TOPIC}\"\n\
         [ops]\nmetrics_listen = \"127.0.0.1:0\"\nready_max_lag_seconds = 1\n\
         [outbox]\nsegment_bytes = 4096\nmax_bytes = 8192\n"
    ));
    let ready = daemon.http_get("/ready");
    assert!(
        ready.starts_with("HTTP/1.0 200"),
        "nothing waits yet: {ready}"
    );
    place_calls(&daemon, QUIET_NUMBER, 2, 20, "quiet calls");
    let ready = wait_http(
        &daemon,
        "/ready",
        "kafka delivery lagging",
        Duration::from_secs(15),
    );
    assert!(ready.starts_with("HTTP/1.0 503"), "{ready}");
    assert!(!ready.contains("outbox full"), "{ready}");
    // Fill the small outbox until a call is refused.
    for _ in 0..40 {
        let uac = Uac::new(daemon.addr, QUIET_NUMBER);
        uac.invite("0 101");
        if uac.invite_statuses().last() == Some(&503) {
            break;
        }
    }
    let ready = daemon.http_get("/ready");
    assert!(ready.contains("outbox full"), "{ready}");
    assert!(daemon.http_get("/health").ends_with("ok\n"));
    let status = String::from_utf8(daemon.status(false).stdout).unwrap();
    assert!(status.contains("ready:     NO: "), "{status}");
    assert!(status.contains("outbox full"), "{status}");
}

#[test]
fn a_shutdown_finishes_calls_in_progress_with_cancel_and_ack_still_answered() {
    let mut daemon = Daemon::start(METRICS);
    let finishing = Uac::new(daemon.addr, LONG_NUMBER);
    finishing.invite("0 101");
    finishing.expect(183, "INVITE");
    let cancelled = Uac::new(daemon.addr, LONG_NUMBER);
    cancelled.invite("0 101");
    cancelled.expect(183, "INVITE");
    let signalled = Instant::now();
    daemon.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));

    // A new call is turned away so the carrier tries its next route.
    let late = Uac::new(daemon.addr, POOL_NUMBER);
    late.invite("0 101");
    let refused = late.expect(503, "INVITE");
    assert!(refused.contains("Retry-After: "), "{refused}");
    late.ack();
    assert!(daemon.http_get("/ready").contains("shutting down"));

    // CANCEL still works during the drain.
    cancelled.cancel();
    cancelled.expect(200, "CANCEL");
    cancelled.expect(487, "INVITE");
    cancelled.ack();

    // The other announcement plays to its end, then its 302 goes out and its ACK is taken.
    finishing.expect(302, "INVITE");
    finishing.ack();
    assert!(
        signalled.elapsed() >= Duration::from_millis(LONG_ANNOUNCEMENT_MS - 500),
        "the announcement was not cut short"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        finishing.response().is_none(),
        "the ACK stopped the 302's retransmissions"
    );
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
    let events = daemon.events();
    assert_eq!(
        events_of_type(&events, "call.routed").len(),
        1,
        "{events:#?}"
    );
    assert_eq!(
        events_of_type(&events, "call.abandoned").len(),
        1,
        "{events:#?}"
    );
    assert_eq!(
        events_of_type(&events, "call.offered").len(),
        2,
        "the refused call left none"
    );
}

#[test]
fn systemd_hears_ready_then_watchdog_pings_then_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = base_config(&dir.path().join("var"));
    // 400 ms: a ping every 200 ms.
    let mut daemon = Daemon::start_notifying(dir, &config, &socket_path, Some(400_000));
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if let Ok(n) = notify.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
        }
    }
    assert_eq!(
        heard.first().map(String::as_str),
        Some("READY=1"),
        "{heard:?}"
    );
    let pings = heard.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        (8..=20).contains(&pings),
        "about one ping per 200 ms for 3 s: {heard:?}"
    );
    daemon.stop();
    let mut last = Vec::new();
    while let Ok(n) = notify.recv(&mut buf) {
        last.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
    }
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
}
