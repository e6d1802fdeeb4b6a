//! The sans-IO core of the forwarder: which outbox records are in flight, which are
//! acknowledged, which to send next, and how far the reader may commit.
//!
//! Invariant: the commit point only ever covers a prefix of records that were all acknowledged.
//! After a delivery error nothing new is sent until every in-flight send has finished; then the
//! window rewinds to the first unacknowledged record and sends again from there in position
//! order, skipping records already acknowledged and never skipping an unacknowledged one.

use std::collections::VecDeque;

use crate::outbox::{Position, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unsent,
    InFlight,
    Acked,
}

#[derive(Debug)]
struct Slot {
    rec: Record,
    state: State,
    /// Sent at least once, so a further send is a resend.
    sent: bool,
}

/// Records taken from the outbox and not yet committed, in position order.
#[derive(Debug)]
pub struct Window {
    slots: VecDeque<Slot>,
    /// Index of the next slot to send.
    cursor: usize,
    in_flight: usize,
    /// Most records in flight at once.
    cap: usize,
    /// A send failed since the last rewind.
    failed: bool,
}

/// What to send next; `resend` says it was sent before.
#[derive(Debug)]
pub struct Next<'a> {
    pub rec: &'a Record,
    pub resend: bool,
}

impl Window {
    pub fn new(cap: usize) -> Window {
        Window {
            slots: VecDeque::new(),
            cursor: 0,
            in_flight: 0,
            cap: cap.max(1),
            failed: false,
        }
    }

    /// Records held (acknowledged ones until `release` drops them).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// True after a failure until `rewind`.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Room for this many more records from the outbox.
    pub fn room(&self) -> usize {
        self.cap.saturating_sub(self.slots.len())
    }

    /// Takes the next record read from the outbox. Positions must increase.
    pub fn push(&mut self, rec: Record) {
        debug_assert!(
            self.slots
                .back()
                .is_none_or(|s| s.rec.position < rec.position)
        );
        self.slots.push_back(Slot {
            rec,
            state: State::Unsent,
            sent: false,
        });
    }

    /// The record to send now, if sending is allowed (no failure pending, below the cap).
    pub fn next(&self) -> Option<Next<'_>> {
        if self.failed || self.in_flight >= self.cap {
            return None;
        }
        self.slots.get(self.cursor).map(|s| Next {
            rec: &s.rec,
            resend: s.sent,
        })
    }

    /// The record `next` returned was handed to the producer.
    pub fn sent(&mut self) {
        if let Some(s) = self.slots.get_mut(self.cursor) {
            s.state = State::InFlight;
            s.sent = true;
            self.in_flight += 1;
            self.cursor = self.skip_acked(self.cursor + 1);
        }
    }

    /// The brokers acknowledged `pos`. Unknown or not-in-flight positions are ignored.
    pub fn ack(&mut self, pos: Position) {
        if let Some(s) = self.slot_mut(pos)
            && s.state == State::InFlight
        {
            s.state = State::Acked;
            self.in_flight -= 1;
        }
    }

    /// Delivery of `pos` failed: it must be sent again, and nothing new goes out until `rewind`.
    pub fn fail(&mut self, pos: Position) {
        if let Some(s) = self.slot_mut(pos)
            && s.state == State::InFlight
        {
            s.state = State::Unsent;
            self.in_flight -= 1;
            self.failed = true;
        }
    }

    /// After a failure, once nothing is in flight: send again from the first unacknowledged
    /// record. Returns false (and changes nothing) while sends are still in flight.
    pub fn rewind(&mut self) -> bool {
        if self.in_flight > 0 {
            return false;
        }
        self.failed = false;
        self.cursor = self.skip_acked(0);
        true
    }

    /// Drops the acknowledged prefix; returns the last position of it, the new commit point.
    pub fn release(&mut self) -> Option<Position> {
        let mut last = None;
        while let Some(s) = self.slots.front() {
            if s.state != State::Acked {
                break;
            }
            last = Some(s.rec.position);
            self.slots.pop_front();
            self.cursor = self.cursor.saturating_sub(1);
        }
        last
    }

    fn skip_acked(&self, mut i: usize) -> usize {
        while self.slots.get(i).is_some_and(|s| s.state == State::Acked) {
            i += 1;
        }
        i
    }

    fn slot_mut(&mut self, pos: Position) -> Option<&mut Slot> {
        let i = self
            .slots
            .binary_search_by_key(&pos, |s| s.rec.position)
            .ok()?;
        self.slots.get_mut(i)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rec(p: u64) -> Record {
        Record {
            position: Position(p),
            line: Bytes::from(format!("{{\"n\":{p}}}")),
        }
    }

    fn window(cap: usize, n: u64) -> Window {
        let mut w = Window::new(cap);
        for p in 0..n {
            w.push(rec(p));
        }
        w
    }

    /// Sends until the window refuses; returns the positions sent and whether each was a resend.
    fn send_all(w: &mut Window) -> Vec<(u64, bool)> {
        let mut out = Vec::new();
        while let Some(n) = w.next() {
            out.push((n.rec.position.0, n.resend));
            w.sent();
        }
        out
    }

    #[test]
    fn sends_in_order_up_to_the_cap() {
        let mut w = window(3, 5);
        assert_eq!(send_all(&mut w), [(0, false), (1, false), (2, false)]);
        w.ack(Position(0));
        assert_eq!(send_all(&mut w), [(3, false)]);
        assert_eq!(w.in_flight(), 3);
    }

    #[test]
    fn commit_point_stops_at_the_first_unacked_record() {
        let mut w = window(10, 5);
        send_all(&mut w);
        w.ack(Position(1));
        w.ack(Position(2));
        assert_eq!(w.release(), None, "0 is not acknowledged");
        w.ack(Position(0));
        assert_eq!(w.release(), Some(Position(2)));
        w.ack(Position(4));
        assert_eq!(w.release(), None, "3 is not acknowledged");
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn failure_stops_sending_until_in_flight_drains_then_resends_only_unacked() {
        let mut w = window(10, 6);
        w.push(rec(6));
        assert_eq!(send_all(&mut w).len(), 7);
        w.ack(Position(0));
        w.fail(Position(1));
        w.ack(Position(2));
        w.fail(Position(3));
        assert!(w.next().is_none(), "no send after a failure");
        assert!(!w.rewind(), "4, 5 and 6 are still in flight");
        w.ack(Position(4));
        w.fail(Position(5));
        w.ack(Position(6));
        assert!(w.rewind());
        assert_eq!(send_all(&mut w), [(1, true), (3, true), (5, true)]);
        assert_eq!(w.release(), Some(Position(0)));
        for p in [1, 3, 5] {
            w.ack(Position(p));
        }
        assert_eq!(w.release(), Some(Position(6)));
        assert!(w.is_empty());
    }

    #[test]
    fn cursor_survives_release_and_new_records() {
        let mut w = window(2, 2);
        send_all(&mut w);
        w.ack(Position(0));
        w.ack(Position(1));
        assert_eq!(w.release(), Some(Position(1)));
        w.push(rec(2));
        assert_eq!(send_all(&mut w), [(2, false)]);
        assert_eq!(w.room(), 1);
    }

    #[test]
    fn stale_and_duplicate_reports_change_nothing() {
        let mut w = window(4, 2);
        send_all(&mut w);
        w.ack(Position(0));
        w.ack(Position(0));
        w.fail(Position(0));
        w.ack(Position(99));
        assert_eq!(w.in_flight(), 1);
        assert!(!w.failed());
    }

    /// Random interleavings of acks and failures: everything is eventually acknowledged,
    /// commit points only grow and never pass an unacknowledged record.
    #[test]
    fn random_outcomes_never_commit_past_an_unacked_record() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let n = 1 + rand() % 40;
            let mut w = window(1 + (rand() % 8) as usize, n);
            let mut acked = vec![false; n as usize];
            let mut flight: Vec<u64> = Vec::new();
            let mut committed: Option<u64> = None;
            for _ in 0..10_000 {
                while let Some(x) = w.next() {
                    flight.push(x.rec.position.0);
                    w.sent();
                }
                if flight.is_empty() {
                    if w.failed() {
                        assert!(w.rewind());
                        continue;
                    }
                    break;
                }
                let i = (rand() as usize) % flight.len();
                let p = flight.swap_remove(i);
                if rand() % 4 == 0 {
                    w.fail(Position(p));
                } else {
                    w.ack(Position(p));
                    acked[p as usize] = true;
                }
                if let Some(c) = w.release() {
                    assert!(committed.is_none_or(|old| c.0 > old));
                    assert!(acked[..=c.0 as usize].iter().all(|&a| a));
                    committed = Some(c.0);
                }
            }
            assert_eq!(committed, Some(n - 1));
            assert!(w.is_empty());
        }
    }
}
