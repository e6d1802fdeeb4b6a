//! Reliable provisional responses, UAS side (RFC 3262 §3), sans-IO: the RSeq sequence, the one
//! reliable provisional that may be unacknowledged at a time, its retransmission schedule (T1,
//! doubling, no T2 cap) and the 64×T1 bound after which the INVITE is to be refused with a 5xx,
//! and PRACK matching by RAck (§7.2). The call flow owns one per INVITE and sends what it says.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// An `RAck` header value: `response-num CSeq-num Method` (§7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    pub rseq: u32,
    pub cseq: u32,
    pub method: String,
}

impl RAck {
    pub fn parse(value: &str) -> Option<Self> {
        let mut it = value.split_ascii_whitespace();
        let rseq = it.next()?.parse().ok()?;
        let cseq = it.next()?.parse().ok()?;
        let method = it.next()?.to_owned();
        if it.next().is_some() {
            return None;
        }
        Some(Self { rseq, cseq, method })
    }
}

/// What `poll` asks of the shell.
#[derive(Clone, PartialEq, Eq)]
pub enum Due {
    /// Nothing to send now.
    Idle,
    /// Send these bytes again.
    Retransmit(Bytes),
    /// 64×T1 passed without PRACK: refuse the INVITE with a 5xx (§3).
    TimedOut,
}

// The bytes are our 183, which echoes the caller's From, To and Call-ID: length only.
impl fmt::Debug for Due {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle => f.write_str("Idle"),
            Self::Retransmit(bytes) => f
                .debug_struct("Retransmit")
                .field("len", &bytes.len())
                .finish(),
            Self::TimedOut => f.write_str("TimedOut"),
        }
    }
}

/// How a PRACK relates to our reliable provisionals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prack {
    /// It acknowledges the outstanding one (or repeats the acknowledgement of the last one): 200.
    Acknowledged,
    /// It matches nothing we sent: 481 (§3).
    Unknown,
}

struct Outstanding {
    rseq: u32,
    bytes: Bytes,
    give_up_at: Instant,
    next_at: Instant,
    interval: Duration,
}

impl fmt::Debug for Outstanding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outstanding")
            .field("rseq", &self.rseq)
            .field("len", &self.bytes.len())
            .field("give_up_at", &self.give_up_at)
            .field("next_at", &self.next_at)
            .field("interval", &self.interval)
            .finish()
    }
}

/// One INVITE's reliable provisionals.
#[derive(Debug)]
pub struct Reliable {
    t1: Duration,
    invite_cseq: u32,
    next_rseq: u32,
    outstanding: Option<Outstanding>,
    last_acknowledged: Option<u32>,
}

impl Reliable {
    /// `initial_rseq` should be random in 1..2³¹ (§3); `invite_cseq` is the INVITE's CSeq number.
    pub fn new(t1: Duration, invite_cseq: u32, initial_rseq: u32) -> Self {
        Self {
            t1,
            invite_cseq,
            next_rseq: initial_rseq.clamp(1, (1 << 31) - 1),
            outstanding: None,
            last_acknowledged: None,
        }
    }

    /// A random first RSeq, as §3 asks.
    pub fn random_rseq() -> u32 {
        rand::random::<u32>() % ((1 << 31) - 1) + 1
    }

    /// Whether another reliable provisional may be sent: §3 allows only one unacknowledged.
    pub fn can_send(&self) -> bool {
        self.outstanding.is_none()
    }

    /// The RSeq to put into the next reliable provisional.
    pub fn next_rseq(&self) -> u32 {
        self.next_rseq
    }

    /// The shell sent the provisional numbered `next_rseq()` as `bytes` at `now`.
    pub fn sent(&mut self, bytes: Bytes, now: Instant) {
        self.outstanding = Some(Outstanding {
            rseq: self.next_rseq,
            bytes,
            give_up_at: now + self.t1 * 64,
            next_at: now + self.t1,
            interval: self.t1,
        });
        // §3: each reliable provisional has an RSeq one higher than the last.
        self.next_rseq = self.next_rseq.wrapping_add(1).max(1);
    }

    /// A PRACK with this RAck arrived.
    pub fn on_prack(&mut self, rack: &RAck) -> Prack {
        if rack.cseq != self.invite_cseq || !rack.method.eq_ignore_ascii_case("INVITE") {
            return Prack::Unknown;
        }
        match &self.outstanding {
            Some(o) if o.rseq == rack.rseq => {
                self.last_acknowledged = Some(o.rseq);
                self.outstanding = None;
                Prack::Acknowledged
            }
            // A PRACK sent again (its 200 was lost) for what is already acknowledged.
            _ if self.last_acknowledged == Some(rack.rseq) => Prack::Acknowledged,
            _ => Prack::Unknown,
        }
    }

    /// What is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Due {
        let Some(o) = self.outstanding.as_mut() else {
            return Due::Idle;
        };
        if now >= o.give_up_at {
            self.outstanding = None;
            return Due::TimedOut;
        }
        if now < o.next_at {
            return Due::Idle;
        }
        o.interval *= 2;
        o.next_at = now + o.interval;
        Due::Retransmit(o.bytes.clone())
    }

    /// When `poll` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.outstanding
            .as_ref()
            .map(|o| o.next_at.min(o.give_up_at))
    }

    /// The final response went out: nothing is retransmitted after it.
    pub fn finish(&mut self) {
        self.outstanding = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: Duration = Duration::from_millis(500);

    fn rack(rseq: u32) -> RAck {
        RAck {
            rseq,
            cseq: 7,
            method: "INVITE".into(),
        }
    }

    #[test]
    fn rack_parses_three_fields_only() {
        assert_eq!(
            RAck::parse("776656 1 INVITE"),
            Some(RAck {
                rseq: 776_656,
                cseq: 1,
                method: "INVITE".into()
            })
        );
        assert_eq!(
            RAck::parse("  5   2  INVITE "),
            Some(RAck {
                rseq: 5,
                cseq: 2,
                method: "INVITE".into()
            })
        );
        for bad in ["", "1 2", "x 2 INVITE", "1 2 INVITE extra", "-1 2 INVITE"] {
            assert_eq!(RAck::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retransmits_at_t1_doubling_until_prack() {
        let start = Instant::now();
        let mut r = Reliable::new(T1, 7, 100);
        assert!(r.can_send());
        assert_eq!(r.next_rseq(), 100);
        r.sent(Bytes::from_static(b"183"), start);
        assert!(!r.can_send());
        assert_eq!(r.next_rseq(), 101);
        assert_eq!(r.poll(start + T1 / 2), Due::Idle);
        let mut at = start;
        let mut sends = Vec::new();
        for _ in 0..4 {
            at = r.next_deadline().unwrap();
            assert_eq!(r.poll(at), Due::Retransmit(Bytes::from_static(b"183")));
            sends.push(at - start);
        }
        assert_eq!(
            sends,
            [T1, T1 * 3, T1 * 7, T1 * 15],
            "intervals T1, 2T1, 4T1, 8T1"
        );
        assert_eq!(r.on_prack(&rack(100)), Prack::Acknowledged);
        assert_eq!(r.poll(at + T1 * 100), Due::Idle);
        assert_eq!(r.next_deadline(), None);
        assert!(r.can_send());
        // The PRACK again (its 200 lost): still acknowledged, not 481.
        assert_eq!(r.on_prack(&rack(100)), Prack::Acknowledged);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_64_t1() {
        let start = Instant::now();
        let mut r = Reliable::new(T1, 7, 1);
        r.sent(Bytes::from_static(b"183"), start);
        let mut retransmits = 0;
        loop {
            let at = r.next_deadline().unwrap();
            match r.poll(at) {
                Due::Retransmit(_) => retransmits += 1,
                Due::TimedOut => {
                    assert_eq!(at - start, T1 * 64);
                    break;
                }
                Due::Idle => unreachable!("a deadline always has work"),
            }
        }
        assert_eq!(retransmits, 6, "T1 .. 32 T1, then the 64 T1 bound");
        assert_eq!(r.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn pracks_for_other_responses_or_requests_are_unknown() {
        let now = Instant::now();
        let mut r = Reliable::new(T1, 7, 50);
        assert_eq!(r.on_prack(&rack(50)), Prack::Unknown, "nothing sent yet");
        r.sent(Bytes::from_static(b"183"), now);
        assert_eq!(r.on_prack(&rack(49)), Prack::Unknown);
        let mut wrong_cseq = rack(50);
        wrong_cseq.cseq = 8;
        assert_eq!(r.on_prack(&wrong_cseq), Prack::Unknown);
        let mut wrong_method = rack(50);
        wrong_method.method = "UPDATE".into();
        assert_eq!(r.on_prack(&wrong_method), Prack::Unknown);
        assert!(!r.can_send(), "still outstanding");
        r.finish();
        assert_eq!(r.poll(now + T1), Due::Idle);
    }

    #[test]
    fn random_rseq_is_in_range() {
        for _ in 0..1000 {
            let v = Reliable::random_rseq();
            assert!((1..1 << 31).contains(&v));
        }
    }
}
