//! Where a call becomes events: the flow from the UAS decision to route an INVITE for a
//! tracking number until its final response — the disclosure announcement, the objection, the
//! events in the outbox, then the 302 (or the 487, 403, 500, 503).
//!
//! `machine` is the flow as a sans-IO state machine and holds every rule of it. `shell` runs it
//! against the world: the outbox, the early media (`early_media`: RTP port, SDP answer, player)
//! and the SIP side through the edge's `ServerInvite` handle, which knows how to send a 183 or a
//! final response but not when.

mod early_media;
pub mod machine;
mod shell;
pub mod stats;

pub use shell::{CALL_RESERVE, Calls};
pub use stats::Stats;

pub use machine::{
    Action, Ending, Final, Flow, Input, Media, Plan, Played, Record, Room, Unwritten,
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
