//! The async shell that streams an announcement as RTP early media (RFC 3960 §3: media sent
//! with a 183 before the final response) while listening on the same socket for the caller's
//! RFC 4733 key presses.
//!
//! Pacing uses absolute deadlines — packet k is due at start + k × 20 ms — rather than a
//! relative sleep or `tokio::time::interval`, so scheduling delays do not add up over a long
//! file; the sans-IO `Pacer` below holds that arithmetic.
//!
//! When the caller presses the objection key the announcement stops and `play` returns at
//! once: the caller has heard the disclosure up to the point of objecting, the rest of it
//! ("press 9 to object") no longer applies to them, and returning early lets the SIP layer
//! redirect the call (untracked) without making the caller wait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::dtmf::DtmfDetector;
use super::g711::Codec;
use super::rtp::{Latch, Packetizer, Start};
use super::wav::Announcement;

/// One packet's worth of audio: 160 samples at 8 kHz.
pub const PTIME: Duration = Duration::from_millis(20);
/// Further behind schedule than this (the runtime stalled), we stop catching up: a burst of
/// more than a few packets overflows the caller's jitter buffer and is dropped there anyway,
/// so it is better to accept one gap and continue on a fresh schedule.
const MAX_LAG: Duration = Duration::from_millis(100);
/// Consecutive receive errors after which we stop listening instead of spinning on them.
const MAX_RECV_ERRORS: u32 = 64;
/// Larger than any RTP packet a trunk sends (Ethernet MTU).
const RECV_BUF: usize = 1500;

/// What a playback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayOutcome {
    /// Audio sent: packets × 20 ms (media time, not wall-clock time).
    pub played: Duration,
    pub end: PlayEnd,
    /// Packets ignored because they came from other than the caller's latched stream.
    pub foreign_packets: u64,
}

/// Why a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayEnd {
    /// The whole announcement was sent and its last packet's time has passed.
    Complete,
    /// The caller pressed the objection key in the RTP stream.
    Objected,
    /// The cancel token fired (CANCEL, an objection by SIP INFO, a PRACK timeout, shutdown):
    /// whoever fired it knows which.
    Stopped,
}

/// Absolute-deadline schedule for packets (sans-IO: takes `now`, returns deadlines).
#[derive(Debug, Clone, Copy)]
struct Pacer {
    start: Instant,
    k: u32,
}

impl Pacer {
    fn new(start: Instant) -> Self {
        Pacer { start, k: 0 }
    }

    /// When the next packet is due.
    fn deadline(&self) -> Instant {
        self.start + PTIME * self.k
    }

    /// Records that the due packet was sent at `now`.
    fn sent(&mut self, now: Instant) {
        let late = now.saturating_duration_since(self.deadline());
        if late > MAX_LAG {
            self.start += late;
        }
        self.k = self.k.saturating_add(1);
    }
}

/// Streams `announcement` to `remote` from `socket` until it ends, the caller presses
/// `objection_digit` (detected only when `te_pt` was negotiated), or `cancel` fires.
///
/// Key presses are accepted only from the caller's stream (`rtp::Latch`): behind NAT the
/// caller's RTP rarely comes from the address in their SDP, so the first RTP packet latches,
/// and the signalled address may take over; anything else could forge or suppress an objection.
/// The socket is shared so the caller can keep it (and its port) after playback: see
/// `ports`, a port stays leased until its socket is closed.
pub async fn play(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    announcement: Arc<Announcement>,
    codec: Codec,
    te_pt: Option<u8>,
    objection_digit: char,
    cancel: CancellationToken,
) -> PlayOutcome {
    // The thread-local RNG is not Send; draw from it before the first await.
    let start = Start::random(&mut rand::thread_rng());
    let mut packets = Packetizer::new(announcement.payload(codec), codec, start);
    let mut pacer = Pacer::new(Instant::now());
    let mut detector = DtmfDetector::new();
    let mut latch = Latch::new(remote);
    let mut buf = [0u8; RECV_BUF];
    let mut listening = true;
    let mut recv_errors = 0u32;
    let mut send_failed = false;
    let mut foreign_packets = 0;

    let end = loop {
        tokio::select! {
            // Cancel first so a torn-down call stops within one tick; sending before
            // receiving so a flood of inbound packets cannot delay our audio.
            biased;
            () = cancel.cancelled() => break PlayEnd::Stopped,
            () = sleep_until(pacer.deadline()) => {
                let Some(packet) = packets.next() else {
                    break PlayEnd::Complete;
                };
                if socket.send_to(&packet, remote).await.is_err() && !send_failed {
                    // Logged once: an unreachable peer would otherwise log 50 lines a second.
                    send_failed = true;
                    debug!("Early media send failed; continuing.");
                }
                pacer.sent(Instant::now());
            }
            r = socket.recv_from(&mut buf), if listening => match r {
                Ok((n, from)) => {
                    recv_errors = 0;
                    let packet = buf.get(..n).unwrap_or_default();
                    if !latch.accepts(from, packet) {
                        foreign_packets += 1;
                        continue;
                    }
                    let key = te_pt.and_then(|pt| detector.on_rtp(packet, pt));
                    if key == Some(objection_digit) {
                        break PlayEnd::Objected;
                    }
                }
                Err(_) => {
                    recv_errors += 1;
                    if recv_errors >= MAX_RECV_ERRORS {
                        listening = false;
                        debug!("Early media receive keeps failing; no longer listening for keys.");
                    }
                }
            },
        }
    };
    PlayOutcome {
        played: PTIME * u32::try_from(packets.sent()).unwrap_or(u32::MAX),
        end,
        foreign_packets,
    }
}

#[cfg(test)]
mod tests;
