//! The disclosure announcement as a carrier and a caller's phone see it: 183 with an SDP answer,
//! G.711 RTP paced at 20 ms, the objection key (RFC 4733 and SIP INFO), CANCEL mid-announcement,
//! and many calls at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::uac::{Packet, Uac};
use common::*;

/// Timing assertions measure arrival times on this machine's two cores: the tests of this file
/// run one at a time so they do not measure each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How far the stream's pace drifted from 20 ms per packet over the file: the median offset of
/// the last ten packets from their ideal times minus that of the first ten. Medians keep one late
/// wake-up of the receiving thread from counting as drift.
fn drift(packets: &[Packet]) -> Duration {
    let start = packets[0].at;
    let offsets: Vec<f64> = packets
        .iter()
        .enumerate()
        .map(|(i, p)| (p.at - start).as_secs_f64() - 0.020 * i as f64)
        .collect();
    let median = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let n = offsets.len().min(10);
    Duration::from_secs_f64((median(&offsets[offsets.len() - n..]) - median(&offsets[..n])).abs())
}

fn assert_stream(packets: &[Packet], pt: u8, duration_ms: u64) {
    let expected = (duration_ms / 20) as usize;
    assert!(
        packets.len().abs_diff(expected) <= 1,
        "{} packets for a {duration_ms} ms file (expected {expected} ±1)",
        packets.len()
    );
    assert!(packets[0].marker(), "marker bit on the first packet");
    for pair in packets.windows(2) {
        assert_eq!(
            pair[1].seq(),
            pair[0].seq().wrapping_add(1),
            "sequence steps by 1"
        );
        assert_eq!(
            pair[1].ts(),
            pair[0].ts().wrapping_add(160),
            "timestamp steps by 160"
        );
        assert_eq!(pair[1].ssrc(), pair[0].ssrc(), "one SSRC");
        assert!(!pair[1].marker(), "marker only on the first packet");
    }
    for p in packets {
        assert_eq!(p.pt(), pt);
        assert_eq!(p.bytes.len(), 12 + 160, "20 ms of G.711 per packet");
    }
}

#[test]
fn early_media_answers_183_streams_the_announcement_then_redirects() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    let rtp = uac.receive(Duration::from_millis(300));
    uac.invite("0 8 101");
    let progress = uac.expect(183, "INVITE");
    assert!(progress.contains("Content-Type: application/sdp"));
    assert!(progress.contains("m=audio "), "{progress}");
    assert!(
        progress.contains("RTP/AVP 0 101"),
        "PCMU, the offer's first codec, and telephone-event: {progress}"
    );
    assert!(progress.contains("a=sendrecv"));
    let redirect = uac.expect(302, "INVITE");
    assert!(redirect.contains("Contact: <sip:+493055509000@pbx.example.net;user=phone>"));
    uac.ack();
    let packets = rtp.finish();
    assert_stream(&packets, 0, ANNOUNCEMENT_MS);
    let events = daemon.wait_events(3);
    let disclosed = events_of_type(&events, "call.disclosed");
    assert_eq!(disclosed.len(), 1);
    assert_eq!(disclosed[0]["complete"], true);
    assert_eq!(disclosed[0]["played_seconds"], 0.4);
    assert_eq!(disclosed[0]["consent"], "informed");
    assert_eq!(disclosed[0]["outcome"], "complete");
    let wav = std::fs::read(daemon.dir.path().join("announcement.wav")).unwrap();
    assert_eq!(disclosed[0]["recording_sha256"], sha256_hex(&wav));
}

#[test]
fn pcma_is_used_when_the_offer_prefers_it_and_no_common_codec_is_488() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    let rtp = uac.receive(Duration::from_millis(300));
    uac.invite("8 0");
    uac.expect(302, "INVITE");
    uac.ack();
    assert_stream(&rtp.finish(), 8, ANNOUNCEMENT_MS);

    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    uac.invite("18");
    uac.expect(488, "INVITE");
    uac.ack();
}

#[test]
fn long_announcement_keeps_timing_without_drift() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    let rtp = uac.receive(Duration::from_millis(300));
    uac.invite("0 101");
    uac.expect(302, "INVITE");
    uac.ack();
    let packets = rtp.finish();
    assert_stream(&packets, 0, LONG_ANNOUNCEMENT_MS);
    let span = packets.last().unwrap().at - packets[0].at;
    let ideal = Duration::from_millis(20 * (packets.len() as u64 - 1));
    assert!(
        span.abs_diff(ideal) <= Duration::from_millis(20),
        "drift {span:?} vs {ideal:?}"
    );
}

#[test]
fn objection_digit_by_rfc4733_drops_pseudonym_and_region_but_still_routes() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    let rtp = uac.receive(Duration::from_millis(300));
    uac.invite("0 101");
    uac.expect(183, "INVITE");
    // Wait for the first RTP packet to learn the daemon's media address, then press 9.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    let source = loop {
        assert!(Instant::now() < deadline, "no RTP");
        if let Ok((_, from)) = uac.media.peek_from(&mut buf) {
            break from;
        }
    };
    uac.send_dtmf(source, 9);
    uac.expect(302, "INVITE");
    uac.ack();
    let packets = rtp.finish();
    assert!(
        packets.len() < (LONG_ANNOUNCEMENT_MS / 20) as usize,
        "playback stopped at the objection"
    );
    let events = daemon.wait_events(3);
    assert_eq!(events.len(), 3, "{events:#?}");
    for e in &events {
        assert_eq!(e["consent"], "objected");
        assert!(e.get("caller_pseudonym").is_none(), "{e}");
        assert!(e.get("caller_region").is_none(), "{e}");
        assert_eq!(e["campaign_id"], "long-notice");
    }
    assert_eq!(
        events_of_type(&events, "call.routed").len(),
        1,
        "objecting is not hanging up"
    );
    assert_eq!(
        events_of_type(&events, "call.disclosed")[0]["outcome"],
        "objected"
    );
}

#[test]
fn objection_by_sip_info_is_honoured() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    uac.invite("0 101");
    uac.expect(183, "INVITE");
    uac.info_digit('9');
    uac.expect(200, "INFO");
    uac.expect(302, "INVITE");
    uac.ack();
    let events = daemon.wait_events(3);
    assert!(
        events
            .iter()
            .all(|e| e["consent"] == "objected" && e.get("caller_pseudonym").is_none())
    );
    assert_eq!(
        events_of_type(&events, "call.disclosed")[0]["outcome"],
        "objected"
    );
}

#[test]
fn cancel_mid_announcement_stops_the_stream_and_records_the_abandonment() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    let rtp = uac.receive(Duration::from_millis(500));
    uac.invite("0 101");
    uac.expect(183, "INVITE");
    std::thread::sleep(Duration::from_millis(500));
    let cancelled_at = Instant::now();
    uac.cancel();
    let mut got = Vec::new();
    while got.len() < 2 {
        let (status, method, _) = uac.response().expect("responses to CANCEL and INVITE");
        if status >= 200 {
            got.push((status, method));
        }
    }
    assert!(got.contains(&(200, "CANCEL".to_owned())), "{got:?}");
    assert!(got.contains(&(487, "INVITE".to_owned())), "{got:?}");
    uac.ack();
    let packets = rtp.finish();
    let last = packets.last().unwrap().at;
    assert!(
        last <= cancelled_at + Duration::from_millis(100),
        "stream stopped {:?} after the CANCEL",
        last.saturating_duration_since(cancelled_at)
    );
    let events = daemon.wait_events(3);
    let abandoned = events_of_type(&events, "call.abandoned");
    assert_eq!(abandoned.len(), 1, "{events:#?}");
    let played = abandoned[0]["played_seconds"].as_f64().unwrap();
    assert!(
        (0.3..1.5).contains(&played),
        "hung up about 0.5 s in, got {played}"
    );
    assert!(events_of_type(&events, "call.routed").is_empty());
    let disclosed = events_of_type(&events, "call.disclosed");
    assert_eq!(disclosed[0]["complete"], false);
    assert_eq!(disclosed[0]["outcome"], "hung_up");
}

#[test]
fn invite_without_sdp_skips_the_announcement_and_keeps_no_caller_identifier() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let out = sipp("uac_not_found.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    // uac_not_found expects 404; a pool number answers 302, so sipp reports the mismatch.
    assert!(!out.status.success());
    let events = daemon.wait_events(2);
    assert_eq!(events.len(), 2, "{events:#?}");
    for e in &events {
        assert_eq!(e["disclosure"], "skipped");
        assert!(e.get("caller_pseudonym").is_none());
    }
}

#[test]
fn two_hundred_concurrent_announced_calls_complete_without_drift() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let addr = daemon.addr;
            std::thread::spawn(move || {
                let uac = Uac::new(addr, LONG_NUMBER);
                let rtp = uac.receive(Duration::from_millis(400));
                uac.invite("0 101");
                uac.expect(302, "INVITE");
                uac.ack();
                rtp.finish()
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for call in calls {
        let packets = call.join().unwrap();
        assert_stream(&packets, 0, LONG_ANNOUNCEMENT_MS);
        worst = worst.max(drift(&packets));
    }
    assert!(
        worst <= Duration::from_millis(20),
        "worst drift over the file: {worst:?}"
    );
    let events = daemon.wait_events(600);
    assert_eq!(events_of_type(&events, "call.routed").len(), 200);
}

#[test]
fn sigterm_during_an_announcement_lets_the_call_finish() {
    let _serial = serial();
    let mut daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    uac.invite("0 101");
    uac.expect(183, "INVITE");
    // Stop taking calls; the call in its announcement still gets its 302 and its events.
    let stopper = std::thread::spawn(move || {
        let code = daemon.stop();
        (daemon, code)
    });
    uac.expect(302, "INVITE");
    uac.ack();
    let (daemon, code) = stopper.join().unwrap();
    assert_eq!(code, Some(0));
    let events = daemon.events();
    assert_eq!(
        events_of_type(&events, "call.routed").len(),
        1,
        "{events:#?}"
    );
}

/// The base config with its RTP range cut to `ports` even ports and extra `[media]` settings.
fn with_media(dir: &std::path::Path, ports: u16, media_extra: &str) -> String {
    let config = base_config(&dir.join("var"));
    let min_line = config
        .lines()
        .find(|l| l.starts_with("port_min = "))
        .unwrap()
        .to_owned();
    let min: u16 = min_line.trim_start_matches("port_min = ").parse().unwrap();
    let max_line = config
        .lines()
        .find(|l| l.starts_with("port_max = "))
        .unwrap()
        .to_owned();
    config.replace(
        &max_line,
        &format!("port_max = {}\n{media_extra}", min + 2 * (ports - 1)),
    )
}

#[test]
fn more_calls_than_rtp_ports_get_503_with_retry_after() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = with_media(dir.path(), 2, "");
    let daemon = Daemon::start_with(dir, &config);
    let calls: Vec<Uac> = (0..3).map(|_| Uac::new(daemon.addr, LONG_NUMBER)).collect();
    calls[0].invite("0 101");
    calls[0].expect(183, "INVITE");
    calls[1].invite("0 101");
    calls[1].expect(183, "INVITE");
    calls[2].invite("0 101");
    let refused = calls[2].expect(503, "INVITE");
    assert!(refused.contains("Retry-After: "), "{refused}");
    calls[2].ack();
    for uac in &calls[..2] {
        uac.expect(302, "INVITE");
        uac.ack();
    }
}

#[test]
fn long_announcements_resend_the_183_so_carrier_timers_do_not_fire() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = with_media(dir.path(), 50, "refresh_seconds = 1");
    let daemon = Daemon::start_with(dir, &config);
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    uac.invite("0 101");
    let mut progress = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no final response");
        let Some((status, method, _)) = uac.response() else {
            continue;
        };
        if method == "INVITE" && status == 183 {
            progress += 1;
        }
        if status >= 200 {
            assert_eq!(status, 302);
            break;
        }
    }
    uac.ack();
    assert!(
        progress >= 2,
        "the 183 was resent during a 2 s announcement ({progress})"
    );
}

#[test]
fn external_hook_redirects_to_the_media_server_and_records_delegation() {
    let _serial = serial();
    let daemon = Daemon::start(
        "[[numbers.pool]]\nnumber = \"+493055501004\"\ncampaign = \"delegated\"\n\n[campaigns.delegated]\ndestination = \"tel:+493055509004\"\ndisclosure = \"external\"\nexternal_uri = \"sip:announce@media.example.net\"\n",
    );
    let uac = Uac::new(daemon.addr, "+493055501004");
    uac.invite("0 101");
    let redirect = uac.expect(302, "INVITE");
    uac.ack();
    assert!(
        redirect.contains("Contact: <sip:announce@media.example.net>"),
        "{redirect}"
    );
    let events = daemon.wait_events(2);
    assert_eq!(events.len(), 2, "{events:#?}");
    for e in &events {
        assert_eq!(e["disclosure"], "delegated");
        assert!(
            e["caller_pseudonym"].is_string(),
            "the notice is given, by the media server"
        );
    }
}
