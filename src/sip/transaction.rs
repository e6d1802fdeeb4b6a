//! Server transactions, sans-IO (RFC 3261 §17.2): matching requests to transactions (§17.2.3),
//! absorbing retransmissions, retransmitting non-2xx finals over UDP (Timer G) until the ACK, and
//! forgetting every transaction after a bounded time (Timers H, I, J). The table never grows past its
//! capacity and every entry has a deadline, so a peer that stops sending ACKs cannot leak memory.
//! The responses it keeps for retransmission are counted in bytes: past a byte budget new
//! INVITEs are refused, since a count alone lets large responses (long Vias echoed back) grow
//! the table far beyond what its capacity suggests.
//!
//! `A` is where responses go (a socket address, a connection handle); the table only stores it.
//! Time comes in as `now`, so tests drive it with plain instants.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

mod settings;
pub use settings::TimerSettings;

/// How long an INVITE may wait for the transaction user's final answer before the table gives up on
/// it. Long enough for a disclosure announcement plus the provisional-response refreshes.
const PROCEEDING_LIMIT: Duration = Duration::from_secs(600);

/// RFC 3261 §17.1.1.1 timer bases.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        TimerSettings::default().into()
    }
}

/// Which transaction a request belongs to: ACK shares the INVITE's class, CANCEL has its own
/// (§9.2: a CANCEL is a separate transaction with the INVITE's branch).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum MethodClass {
    Invite,
    Cancel,
    Other(String),
}

/// Transaction identity (§17.2.3). `Debug` shows the kind and class only: the branch, sent-by,
/// Call-ID and From tag are the caller's wire values.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    id: KeyId,
    class: MethodClass,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum KeyId {
    /// RFC 3261 peers: branch with the magic cookie plus the top Via's sent-by.
    Branch { branch: String, sent_by: String },
    /// RFC 2543 peers have no usable branch: fall back to the dialog-ish fields.
    Legacy {
        call_id: String,
        cseq: u32,
        from_tag: String,
        top_via: String,
    },
}

impl std::fmt::Debug for MethodClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invite => f.write_str("Invite"),
            Self::Cancel => f.write_str("Cancel"),
            // An extension method is any token the peer chose.
            Self::Other(m) => write!(f, "Other({} bytes)", m.len()),
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.id {
            KeyId::Branch { .. } => "rfc3261",
            KeyId::Legacy { .. } => "rfc2543",
        };
        f.debug_struct("Key")
            .field("kind", &kind)
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn rfc3261(branch: &str, sent_by: &str, class: MethodClass) -> Self {
        Self {
            id: KeyId::Branch {
                branch: branch.to_owned(),
                sent_by: sent_by.to_ascii_lowercase(),
            },
            class,
        }
    }

    /// §17.2.3's backward-compatible matching, simplified: the To tag is left out because the ACK
    /// for our non-2xx final carries our tag while the INVITE carried none.
    pub fn rfc2543(
        call_id: &str,
        cseq: u32,
        from_tag: &str,
        top_via: &str,
        class: MethodClass,
    ) -> Self {
        Self {
            id: KeyId::Legacy {
                call_id: call_id.to_owned(),
                cseq,
                from_tag: from_tag.to_owned(),
                top_via: top_via.to_owned(),
            },
            class,
        }
    }

    /// The key of the INVITE transaction a CANCEL with this key targets (§9.2).
    pub fn invite_of_cancel(&self) -> Self {
        Self {
            id: self.id.clone(),
            class: MethodClass::Invite,
        }
    }
}

/// What an incoming request means for the table. `Debug` shows a resent response's length
/// only: it echoes the caller's headers.
#[derive(PartialEq, Eq)]
pub enum Received<A> {
    /// A new server transaction exists; the transaction user must answer it with `respond`.
    New,
    /// A retransmission: resend this (the last response), if there is one yet.
    Retransmission(Option<(A, Bytes)>),
    /// The ACK for our non-2xx final: retransmissions stop.
    Ack,
    /// An ACK that matches nothing (e.g. a late one): dropped, as §17.2.3 leaves it to the TU and
    /// we never send 2xx to INVITE.
    StrayAck,
    /// The table is full: answer 503 statelessly.
    Overloaded,
    /// A new INVITE while the retained responses exceed the byte budget: answer 503 statelessly.
    OverBudget,
}

impl<A> std::fmt::Debug for Received<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::New => f.write_str("New"),
            Self::Retransmission(None) => f.write_str("Retransmission(None)"),
            Self::Retransmission(Some((_, bytes))) => {
                write!(f, "Retransmission({} bytes)", bytes.len())
            }
            Self::Ack => f.write_str("Ack"),
            Self::StrayAck => f.write_str("StrayAck"),
            Self::Overloaded => f.write_str("Overloaded"),
            Self::OverBudget => f.write_str("OverBudget"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE waiting for a final, or non-INVITE in Trying/Proceeding.
    Proceeding,
    /// Final sent; INVITE waits for ACK, non-INVITE absorbs retransmissions.
    Completed,
    /// INVITE: ACK received, absorbing ACK retransmissions for Timer I.
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    G,
    H,
    I,
    J,
}

/// How often transactions stuck in Proceeding are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Tx<A> {
    /// Names the transaction in timer entries, so they carry no copy of the key.
    id: u64,
    state: State,
    reply_to: A,
    reliable: bool,
    last_response: Option<Bytes>,
    g_interval: Duration,
    /// Bumped on every state change so stale heap entries are recognised and skipped.
    generation: u64,
    /// Only meaningful in Proceeding: when the table stops waiting for the transaction user.
    /// Swept rather than scheduled, so answered calls leave no stale heap entry behind.
    give_up_at: Instant,
    /// The request's merge identity, when it registered one (`claim_origin`).
    origin: Option<u64>,
}

/// §8.2.2.2: a request without To tag is identified, for loop detection, by its From tag,
/// Call-ID and CSeq (number and method). Held as a keyed 64-bit hash so the table keeps no
/// second copy of the Call-ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(u64);

/// What `claim_origin` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No live transaction has this origin: it is now this transaction's.
    First,
    /// Another live transaction has it: the same request arrived by another path (a forking
    /// proxy upstream); answer 482 Loop Detected.
    Merged,
}

/// Counters a shell turns into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub retransmissions_absorbed: u64,
    pub finals_retransmitted: u64,
    pub ack_timeouts: u64,
    pub proceeding_timeouts: u64,
    /// New INVITEs refused because the retained responses were over the byte budget.
    budget_refusals: u64,
}

impl Stats {
    pub fn budget_refusals(&self) -> u64 {
        self.budget_refusals
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RespondError {
    #[error("no such server transaction (it ended or never existed)")]
    Unknown,
    #[error("the transaction already has a final response")]
    AlreadyFinal,
}

pub struct Transactions<A> {
    txs: HashMap<Key, Tx<A>>,
    /// Timer entries: (due, transaction id, generation, timer). Stale ones (the transaction moved
    /// on or ended) are skipped when they come due; each is a few words, not a key.
    deadlines: BinaryHeap<Reverse<(Instant, u64, u64, Timer)>>,
    /// Heap payloads live here so the heap stays `Ord` without requiring it of keys.
    ids: HashMap<u64, Key>,
    next_id: u64,
    next_sweep: Option<Instant>,
    timers: Timers,
    capacity: usize,
    /// Bytes of retained responses past which new INVITEs are refused.
    byte_budget: usize,
    /// Bytes of every transaction's `last_response`.
    held_bytes: usize,
    stats: Stats,
    origins: HashMap<Origin, u64>,
    /// Keys the origin hashes, per table, so they cannot be precomputed from outside.
    hasher: std::collections::hash_map::RandomState,
}

impl<A: Clone> Transactions<A> {
    pub fn new(timers: Timers, capacity: usize) -> Self {
        Self {
            txs: HashMap::new(),
            deadlines: BinaryHeap::new(),
            ids: HashMap::new(),
            next_id: 0,
            next_sweep: None,
            timers,
            capacity,
            byte_budget: usize::MAX,
            held_bytes: 0,
            stats: Stats::default(),
            origins: HashMap::new(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Refuses new INVITE transactions while the retained responses hold more than `bytes`.
    #[must_use]
    pub fn with_byte_budget(mut self, bytes: usize) -> Self {
        self.byte_budget = bytes;
        self
    }

    /// Bytes of responses the table holds for retransmission.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The merge identity of a request without To tag (§8.2.2.2).
    pub fn origin(&self, from_tag: &str, call_id: &str, cseq: u32, method: &str) -> Origin {
        use std::hash::BuildHasher;
        Origin(self.hasher.hash_one((from_tag, call_id, cseq, method)))
    }

    /// Registers `origin` for the new transaction `key`, or reports that another live
    /// transaction already holds it.
    pub fn claim_origin(&mut self, key: &Key, origin: Origin) -> Claim {
        let Some(id) = self.txs.get(key).map(|tx| tx.id) else {
            return Claim::First;
        };
        match self.origins.get(&origin) {
            Some(&holder) if holder != id && self.ids.contains_key(&holder) => Claim::Merged,
            _ => {
                self.origins.insert(origin, id);
                if let Some(tx) = self.txs.get_mut(key) {
                    tx.origin = Some(origin.0);
                }
                Claim::First
            }
        }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// INVITE transactions whose final response still waits for its ACK (Timer G resends it
    /// meanwhile); shutdown lets them finish. Walks the table: not for the per-message path.
    pub fn awaiting_ack(&self) -> usize {
        self.txs
            .iter()
            .filter(|(k, tx)| {
                matches!(k.class, MethodClass::Invite) && tx.state == State::Completed
            })
            .count()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Feeds a request (not ACK) into the table.
    pub fn on_request(
        &mut self,
        key: Key,
        reply_to: A,
        reliable: bool,
        now: Instant,
    ) -> Received<A> {
        if let Some(tx) = self.txs.get(&key) {
            self.stats.retransmissions_absorbed += 1;
            // §17.2.1: a retransmitted INVITE gets the most recent response again; §17.2.2 likewise.
            return Received::Retransmission(
                tx.last_response.clone().map(|r| (tx.reply_to.clone(), r)),
            );
        }
        if self.txs.len() >= self.capacity {
            return Received::Overloaded;
        }
        // Only INVITEs are refused: they are what holds a response for up to 32 s, and a CANCEL
        // or an OPTIONS probe must still get through to end calls or keep the trunk up.
        if key.class == MethodClass::Invite && self.held_bytes > self.byte_budget {
            self.stats.budget_refusals += 1;
            return Received::OverBudget;
        }
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(id, key.clone());
        self.txs.insert(
            key.clone(),
            Tx {
                id,
                state: State::Proceeding,
                reply_to,
                reliable,
                last_response: None,
                g_interval: self.timers.t1,
                generation: 0,
                give_up_at: now + PROCEEDING_LIMIT,
                origin: None,
            },
        );
        Received::New
    }

    /// Feeds an ACK: it belongs to the INVITE transaction with the same key.
    pub fn on_ack(&mut self, invite_key: &Key, now: Instant) -> Received<A> {
        let t4 = self.timers.t4;
        let Some(tx) = self.txs.get_mut(invite_key) else {
            return Received::StrayAck;
        };
        match tx.state {
            State::Completed => {
                tx.state = State::Confirmed;
                tx.generation += 1;
                // Confirmed absorbs everything silently (§17.2.1, Figure 7): the final response
                // need not be kept for the rest of Timer I.
                let released = tx.last_response.take().map_or(0, |r| r.len());
                self.held_bytes -= released;
                let (id, generation, reliable) = (tx.id, tx.generation, tx.reliable);
                if reliable {
                    self.remove(invite_key);
                } else {
                    self.schedule(id, Timer::I, generation, now + t4);
                }
                Received::Ack
            }
            State::Confirmed => {
                self.stats.retransmissions_absorbed += 1;
                Received::Ack
            }
            State::Proceeding => Received::StrayAck,
        }
    }

    /// Whether the INVITE transaction with this key still waits for its final response: the one
    /// question a CANCEL asks (§9.2).
    pub fn is_proceeding(&self, key: &Key) -> bool {
        self.txs
            .get(key)
            .is_some_and(|tx| tx.state == State::Proceeding)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.txs.contains_key(key)
    }

    /// The transaction user answers. Returns where to send it. Provisional responses keep the
    /// transaction in Proceeding; a final starts the timers of §17.2.1 / §17.2.2.
    pub fn respond(
        &mut self,
        key: &Key,
        status: u16,
        response: Bytes,
        now: Instant,
    ) -> Result<(A, Bytes), RespondError> {
        let timers = self.timers;
        let tx = self.txs.get_mut(key).ok_or(RespondError::Unknown)?;
        if tx.state != State::Proceeding {
            return Err(RespondError::AlreadyFinal);
        }
        let released = tx
            .last_response
            .replace(response.clone())
            .map_or(0, |r| r.len());
        self.held_bytes = self.held_bytes - released + response.len();
        let out = (tx.reply_to.clone(), response);
        if status < 200 {
            return Ok(out);
        }
        tx.state = State::Completed;
        tx.generation += 1;
        let (id, generation, reliable) = (tx.id, tx.generation, tx.reliable);
        if key.class == MethodClass::Invite {
            // We never send 2xx to INVITE (a redirect server answers 3xx-6xx), so every INVITE
            // final is retransmitted until ACKed (§17.2.1).
            if !reliable {
                self.schedule(id, Timer::G, generation, now + timers.t1);
            }
            self.schedule(id, Timer::H, generation, now + 64 * timers.t1);
        } else if reliable {
            self.remove(key);
        } else {
            self.schedule(id, Timer::J, generation, now + 64 * timers.t1);
        }
        Ok(out)
    }

    /// The earliest instant `poll` has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.deadlines.peek().map(|Reverse((at, ..))| *at);
        match (timer, self.next_sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires due timers; returns the retransmissions to send.
    pub fn poll(&mut self, now: Instant) -> Vec<(A, Bytes)> {
        let mut out = Vec::new();
        self.sweep(now);
        while let Some(Reverse((at, id, generation, timer))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(key) = self.ids.get(&id).cloned() else {
                continue;
            };
            let t2 = self.timers.t2;
            let Some(tx) = self.txs.get_mut(&key) else {
                continue;
            };
            if tx.generation != generation {
                continue;
            }
            match timer {
                Timer::G => {
                    if let Some(response) = &tx.last_response {
                        out.push((tx.reply_to.clone(), response.clone()));
                        self.stats.finals_retransmitted += 1;
                    }
                    tx.g_interval = (tx.g_interval * 2).min(t2);
                    let next = at + tx.g_interval;
                    self.schedule(id, Timer::G, generation, next);
                }
                Timer::H => {
                    self.stats.ack_timeouts += 1;
                    self.remove(&key);
                }
                Timer::I | Timer::J => {
                    self.remove(&key);
                }
            }
        }
        out
    }

    /// Drops INVITE/non-INVITE transactions whose user never answered (a bug or a stuck hook):
    /// the table must stay bounded whatever the transaction user does.
    fn sweep(&mut self, now: Instant) {
        match self.next_sweep {
            Some(at) if at > now => return,
            None if self.txs.is_empty() => return,
            _ => {}
        }
        let before = self.txs.len();
        let (ids, origins, held) = (&mut self.ids, &mut self.origins, &mut self.held_bytes);
        self.txs.retain(|_, tx| {
            let keep = tx.state != State::Proceeding || tx.give_up_at > now;
            if !keep {
                *held -= tx.last_response.as_ref().map_or(0, Bytes::len);
                ids.remove(&tx.id);
                if let Some(origin) = tx.origin {
                    origins.remove(&Origin(origin));
                }
            }
            keep
        });
        self.stats.proceeding_timeouts += (before - self.txs.len()) as u64;
        self.next_sweep = if self.txs.is_empty() {
            None
        } else {
            Some(now + SWEEP_EVERY)
        };
    }

    fn schedule(&mut self, id: u64, timer: Timer, generation: u64, at: Instant) {
        self.deadlines.push(Reverse((at, id, generation, timer)));
    }

    fn remove(&mut self, key: &Key) {
        if let Some(tx) = self.txs.remove(key) {
            self.held_bytes -= tx.last_response.as_ref().map_or(0, Bytes::len);
            self.ids.remove(&tx.id);
            if let Some(origin) = tx.origin.map(Origin)
                && self.origins.get(&origin) == Some(&tx.id)
            {
                self.origins.remove(&origin);
            }
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
