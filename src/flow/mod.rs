//! Where a call becomes events: the flow from the UAS decision to route an INVITE for a
//! tracking number until its final response — the disclosure announcement, the objection, the
//! events in the outbox, then the 302 (or the 487, 403, 500, 503).
//!
//! `machine` is the flow as a sans-IO state machine and holds every rule of it; the async shell
//! that runs it against sockets, the player and the outbox is `sip::edge::redirect` for now.

pub mod machine;

pub use machine::{
    Action, Ending, Final, Flow, Input, Media, Plan, Played, Record, Room, Unwritten,
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
