//! Property: any order of requests, retransmissions, ACKs, CANCELs, responses, origin claims
//! and timer ticks keeps the table's documented invariants (§17.2): it never panics, never
//! grows past capacity, answers a retransmission with the last response, resends only the
//! non-2xx final of an unacknowledged INVITE over UDP, has a deadline while it holds anything,
//! and is empty once every timer has run out.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

const CAPACITY: usize = 5;
const BRANCHES: usize = 3;
/// Per branch: the INVITE, its CANCEL, and an OPTIONS.
const KEYS: usize = BRANCHES * 3;

fn key(index: usize) -> Key {
    let branch = format!("z9hG4bK{}", index / 3);
    let class = match index % 3 {
        0 => MethodClass::Invite,
        1 => MethodClass::Cancel,
        _ => MethodClass::Other("OPTIONS".to_owned()),
    };
    Key::rfc3261(&branch, "192.0.2.1:5060", class)
}

#[derive(Debug, Clone)]
enum Op {
    Request { key: usize, reliable: bool },
    Ack { branch: usize },
    Respond { key: usize, status: u16 },
    Claim { key: usize, origin: u32 },
    Tick { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS, any::<bool>()).prop_map(|(key, reliable)| Op::Request { key, reliable }),
        2 => (0..BRANCHES).prop_map(|branch| Op::Ack { branch }),
        3 => (0..KEYS, prop::sample::select(vec![100u16, 180, 183, 302, 404, 487, 503]))
            .prop_map(|(key, status)| Op::Respond { key, status }),
        1 => (0..KEYS, 0..3u32).prop_map(|(key, origin)| Op::Claim { key, origin }),
        3 => prop_oneof![0..2_000u64, 0..40_000u64, Just(600_000u64)].prop_map(|ms| Op::Tick { ms }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Proceeding,
    Completed,
    Confirmed,
}

/// What the test knows about one live transaction.
#[derive(Debug, Clone)]
struct Live {
    /// Which creation of this key it is: a key may be reused once its transaction ended.
    instance: u64,
    phase: Phase,
    reliable: bool,
    last: Option<Bytes>,
}

struct Model {
    live: HashMap<usize, Live>,
    instances: u64,
    /// origin → the (key, instance) that claimed it first.
    origins: HashMap<u32, (usize, u64)>,
}

impl Model {
    /// Forgets transactions the table no longer has (their timers ran out).
    fn sync(&mut self, table: &Transactions<usize>) {
        self.live.retain(|&k, _| table.contains(&key(k)));
    }

    fn holds(&self, origin: u32, k: usize) -> bool {
        self.origins
            .get(&origin)
            .is_some_and(|&(holder, instance)| {
                holder != k
                    && self
                        .live
                        .get(&holder)
                        .is_some_and(|l| l.instance == instance)
            })
    }
}

fn check_invariants(table: &Transactions<usize>, model: &Model, before: Stats) {
    assert!(table.len() <= CAPACITY, "table grew past its capacity");
    assert_eq!(
        table.len(),
        model.live.len(),
        "table and model disagree on what is live"
    );
    if !table.is_empty() {
        assert!(
            table.next_deadline().is_some(),
            "a live transaction without a deadline"
        );
    }
    for (&k, live) in &model.live {
        assert_eq!(
            table.is_proceeding(&key(k)),
            live.phase == Phase::Proceeding
        );
    }
    let after = table.stats();
    assert!(after.retransmissions_absorbed >= before.retransmissions_absorbed);
    assert!(after.finals_retransmitted >= before.finals_retransmitted);
    assert!(after.ack_timeouts >= before.ack_timeouts);
    assert!(after.proceeding_timeouts >= before.proceeding_timeouts);
}

fn run(ops: &[Op]) {
    let mut table: Transactions<usize> = Transactions::new(Timers::default(), CAPACITY);
    let mut model = Model {
        live: HashMap::new(),
        instances: 0,
        origins: HashMap::new(),
    };
    let mut now = Instant::now();
    let mut sent = 0u64;
    for op in ops {
        let before = table.stats();
        match *op {
            Op::Request { key: k, reliable } => {
                let got = table.on_request(key(k), k, reliable, now);
                match model.live.get(&k) {
                    Some(live) => {
                        let expected = live.last.clone().map(|r| (k, r));
                        assert_eq!(got, Received::Retransmission(expected));
                    }
                    None if model.live.len() >= CAPACITY => assert_eq!(got, Received::Overloaded),
                    None => {
                        assert_eq!(got, Received::New);
                        model.instances += 1;
                        let live = Live {
                            instance: model.instances,
                            phase: Phase::Proceeding,
                            reliable,
                            last: None,
                        };
                        model.live.insert(k, live);
                    }
                }
            }
            Op::Ack { branch } => {
                let k = branch * 3;
                let got = table.on_ack(&key(k), now);
                match model.live.get_mut(&k) {
                    Some(live) if live.phase != Phase::Proceeding => {
                        assert_eq!(got, Received::Ack);
                        live.phase = Phase::Confirmed;
                        live.last = None;
                    }
                    _ => assert_eq!(got, Received::StrayAck),
                }
            }
            Op::Respond { key: k, status } => {
                sent += 1;
                let response = Bytes::from(format!("SIP/2.0 {status} #{sent}"));
                let got = table.respond(&key(k), status, response.clone(), now);
                match model.live.get_mut(&k) {
                    None => assert_eq!(got, Err(RespondError::Unknown)),
                    Some(live) if live.phase != Phase::Proceeding => {
                        assert_eq!(got, Err(RespondError::AlreadyFinal));
                    }
                    Some(live) => {
                        assert_eq!(got, Ok((k, response.clone())));
                        live.last = Some(response);
                        if status >= 200 {
                            live.phase = Phase::Completed;
                        }
                    }
                }
            }
            Op::Claim { key: k, origin } => {
                let got = table.claim_origin(&key(k), Origin(u64::from(origin)));
                if !model.live.contains_key(&k) {
                    assert_eq!(got, Claim::First, "a claim for no transaction");
                } else if model.holds(origin, k) {
                    assert_eq!(got, Claim::Merged);
                } else {
                    assert_eq!(got, Claim::First);
                    model.origins.insert(origin, (k, model.live[&k].instance));
                }
            }
            Op::Tick { ms } => {
                now += Duration::from_millis(ms);
                for (to, bytes) in table.poll(now) {
                    let live = model
                        .live
                        .get(&to)
                        .expect("a resend for a known transaction");
                    assert_eq!(to % 3, 0, "only INVITE finals are resent");
                    assert!(!live.reliable, "a resend over a reliable transport");
                    assert_eq!(
                        live.phase,
                        Phase::Completed,
                        "a resend after the ACK or before the final"
                    );
                    assert_eq!(
                        live.last.as_ref(),
                        Some(&bytes),
                        "a resend of another response"
                    );
                }
            }
        }
        model.sync(&table);
        check_invariants(&table, &model, before);
    }
    // Proceeding gives up after 600 s and every final's timer ends within 64×T1: after that
    // nothing may be left.
    table.poll(now + Duration::from_secs(700));
    assert!(table.is_empty(), "a transaction outlived every timer");
}

proptest! {
    #[test]
    fn any_event_order_keeps_the_table_invariants(
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        run(&ops);
    }
}
