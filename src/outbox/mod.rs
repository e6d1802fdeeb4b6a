//! The durable local event log ("outbox"): the embedded default sink and the source the Kafka
//! forwarder drains.
//!
//! Layout of the outbox directory (normally `<data_dir>/outbox/`, modes 0750 / 0640):
//! - `<first sequence, 20 digits>.jsonl`: segments of JSON Lines, one event per line, rolled at
//!   `Options::segment_bytes`. The newest is the active segment.
//! - `readers/<name>.pos`: a reader's next sequence, decimal, replaced atomically.
//!
//! A [`Position`] is the event's global sequence number (0, 1, 2, ... across segments and
//! restarts). Each append is one write(2) of whole lines, so a killed process loses nothing that
//! `append` acknowledged; on open a torn last line is cut and counted. `Durability::Sync`
//! additionally waits for a group-committed fdatasync. Readers only see lines below the tail the
//! writer published after its write. See `retention.rs` for what is deleted when.
//!
//! One writer per directory: `Outbox::open` takes an exclusive lock on `LOCK`, so a second
//! process (a `cdr import` beside a running daemon) is refused instead of corrupting the log.

mod config;
mod error;
mod options;
mod pos;
mod reader;
mod record;
mod recover;
pub mod redact;
mod retention;
mod scan;
mod segment;
mod stats;
mod sync;
pub mod tail;
mod writer;

#[cfg(test)]
mod tests;

pub use config::Settings;
pub use error::Error;
pub use options::{Durability, Options};
pub use reader::Reader;
pub use record::{Position, Record, Span};
pub use retention::Retention;
pub use scan::{Scan, scan};
pub use stats::Stats;
pub use writer::{OpenReport, Outbox, Usage};
