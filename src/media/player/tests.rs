#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use super::*;
use crate::media::rtp;

const TE: u8 = 101;
/// Generous upper bound so a stuck player fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(10);

fn announcement(ms: u64) -> Arc<Announcement> {
    let samples = usize::try_from(ms * 8).unwrap();
    let pcm: Vec<i16> = (0..samples).map(|i| ((i % 64) as i16 - 32) * 256).collect();
    Arc::new(Announcement::from_pcm("test", "1", &pcm))
}

async fn pair() -> (UdpSocket, UdpSocket) {
    let ours = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let theirs = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    (ours, theirs)
}

fn dtmf(seq: u16, ts: u32, code: u8, end: bool) -> Vec<u8> {
    let mut p = vec![0x80, TE];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0xCAFE_F00Du32.to_be_bytes());
    p.extend_from_slice(&[code, if end { 0x8A } else { 0x0A }, 0x01, 0x40]);
    p
}

#[test]
fn pacer_deadlines_do_not_drift_when_sends_are_late() {
    let t0 = Instant::now();
    let mut p = Pacer::new(t0);
    for k in 0..3000u32 {
        assert_eq!(p.deadline(), t0 + PTIME * k);
        // Every send is 7 ms late; a relative sleep would drift by 21 s over 60 s of audio.
        p.sent(p.deadline() + Duration::from_millis(7));
    }
    assert_eq!(p.deadline(), t0 + Duration::from_secs(60));
}

#[test]
fn pacer_reanchors_after_a_long_stall_instead_of_bursting() {
    let t0 = Instant::now();
    let mut p = Pacer::new(t0);
    p.sent(t0);
    let stalled = p.deadline() + Duration::from_millis(500);
    p.sent(stalled);
    assert_eq!(p.deadline(), stalled + PTIME);
}

#[tokio::test]
async fn one_second_announcement_is_fifty_paced_ordered_packets() {
    let (ours, theirs) = pair().await;
    let remote = theirs.local_addr().unwrap();
    let before = std::time::Instant::now();
    let player = tokio::spawn(play(
        Arc::new(ours),
        remote,
        announcement(1000),
        Codec::Pcmu,
        Some(TE),
        '9',
        CancellationToken::new(),
    ));
    let mut headers = Vec::new();
    let mut buf = [0u8; 1500];
    while headers.len() < 50 {
        let (n, _) = tokio::time::timeout(GUARD, theirs.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, rtp::HEADER_LEN + rtp::SAMPLES);
        headers.push(rtp::parse(&buf[..n]).unwrap().0);
    }
    let last_at = before.elapsed();
    let outcome = tokio::time::timeout(GUARD, player).await.unwrap().unwrap();

    assert_eq!(outcome.end, PlayEnd::Complete);
    assert_eq!(outcome.played, Duration::from_secs(1));
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h.pt, 0);
        assert_eq!(h.marker, i == 0, "marker on packet {i}");
        assert_eq!(h.ssrc, headers[0].ssrc);
        assert_eq!(h.seq, headers[0].seq.wrapping_add(i as u16));
        assert_eq!(h.ts, headers[0].ts.wrapping_add(160 * i as u32));
    }
    // Paced, not blasted: packet 49 cannot leave before its deadline 980 ms after start.
    assert!(last_at >= Duration::from_millis(980), "{last_at:?}");
    // Nothing after the last packet.
    let extra = tokio::time::timeout(Duration::from_millis(50), theirs.recv_from(&mut buf)).await;
    assert!(extra.is_err(), "unexpected packet after the end");
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_playback_within_one_tick() {
    let (ours, theirs) = pair().await;
    let cancel = CancellationToken::new();
    let player = tokio::spawn(play(
        Arc::new(ours),
        theirs.local_addr().unwrap(),
        announcement(60_000),
        Codec::Pcma,
        Some(TE),
        '9',
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(210)).await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let outcome = player.await.unwrap();
    assert_eq!(outcome.end, PlayEnd::Stopped);
    assert!(
        cancelled_at.elapsed() < PTIME,
        "{:?}",
        cancelled_at.elapsed()
    );
    // Packets at 0, 20, ..., 200 ms were due before the cancel at 210 ms.
    assert_eq!(outcome.played, Duration::from_millis(220));
}

#[tokio::test]
async fn objection_key_stops_playback_and_is_reported() {
    let (ours, theirs) = pair().await;
    let our_addr = ours.local_addr().unwrap();
    let player = tokio::spawn(play(
        Arc::new(ours),
        theirs.local_addr().unwrap(),
        announcement(5000),
        Codec::Pcmu,
        Some(TE),
        '9',
        CancellationToken::new(),
    ));
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        tokio::time::timeout(GUARD, theirs.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
    }
    // A start packet, then the three end packets of RFC 4733 §2.5.1.4.
    theirs
        .send_to(&dtmf(1, 800, 9, false), our_addr)
        .await
        .unwrap();
    for seq in 2..=4 {
        theirs
            .send_to(&dtmf(seq, 800, 9, true), our_addr)
            .await
            .unwrap();
    }
    let outcome = tokio::time::timeout(GUARD, player).await.unwrap().unwrap();
    assert_eq!(outcome.end, PlayEnd::Objected);
    assert!(
        outcome.played < Duration::from_secs(5),
        "{:?}",
        outcome.played
    );
}

#[tokio::test]
async fn other_keys_and_voice_do_not_object() {
    let (ours, theirs) = pair().await;
    let our_addr = ours.local_addr().unwrap();
    let player = tokio::spawn(play(
        Arc::new(ours),
        theirs.local_addr().unwrap(),
        announcement(300),
        Codec::Pcma,
        Some(TE),
        '9',
        CancellationToken::new(),
    ));
    let mut buf = [0u8; 1500];
    tokio::time::timeout(GUARD, theirs.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    theirs
        .send_to(&dtmf(1, 800, 5, true), our_addr)
        .await
        .unwrap();
    // The caller's own voice on PT 0, shaped like a '9' event, must not count either.
    let mut voice = dtmf(2, 960, 9, true);
    voice[1] = 0;
    theirs.send_to(&voice, our_addr).await.unwrap();
    let outcome = tokio::time::timeout(GUARD, player).await.unwrap().unwrap();
    assert_eq!(outcome.end, PlayEnd::Complete);
    assert_eq!(outcome.played, Duration::from_millis(300));
}

#[tokio::test]
async fn keys_are_ignored_when_telephone_event_was_not_negotiated() {
    let (ours, theirs) = pair().await;
    let our_addr = ours.local_addr().unwrap();
    let player = tokio::spawn(play(
        Arc::new(ours),
        theirs.local_addr().unwrap(),
        announcement(200),
        Codec::Pcmu,
        None,
        '9',
        CancellationToken::new(),
    ));
    let mut buf = [0u8; 1500];
    tokio::time::timeout(GUARD, theirs.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    theirs
        .send_to(&dtmf(1, 800, 9, true), our_addr)
        .await
        .unwrap();
    let outcome = tokio::time::timeout(GUARD, player).await.unwrap().unwrap();
    assert_eq!(outcome.end, PlayEnd::Complete);
}
