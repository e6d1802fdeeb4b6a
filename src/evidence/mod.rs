//! Disclosure evidence an auditor can check without trusting the database: every
//! `call.disclosed` event, reduced to facts about the announcement (no caller, no call key),
//! appended to a hash-chained day file and sealed with an Ed25519 signature.
//!
//! Layout of `<data_dir>/evidence/` (directory 0700):
//! - `<YYYY-MM-DD>.jsonl` (0600): one line per disclosure whose `occurred_at` falls on that UTC
//!   day, each carrying `chain` = SHA-256(previous chain ‖ the line without its `chain`); the
//!   first line of a day chains from 32 zero bytes.
//! - `<YYYY-MM-DD>.seal` (0600): day, line count, chain head, key id and the signature over
//!   `calltrackd-evidence-v1\n<day>\n<count>\n<chain_head>`; replaced atomically.
//! - `signing.key` (0600): the raw 32-byte Ed25519 seed, made on first start.
//! - `signing.pub` (0644): the public key, hex; what an auditor is given.
//!
//! The daemon's writer reads its own outbox through the durable reader [`READER`], so a line
//! is written once per event even across crashes (see `store.rs` for the replay rule). The
//! chain and seal format is frozen by the tests in `verify.rs`: an auditor's copy of the
//! verifier must keep working on old files.

mod chain;
mod error;
mod key;
mod layout;
mod line;
mod seal;
mod stats;
mod store;
mod verify;
mod writer;

pub use chain::{Chain, GENESIS, link};
pub use error::EvidenceError;
pub use key::{fingerprint, open_signing_key, read_public_key};
pub use layout::{Layout, day_name, parse_day};
pub use line::Entry;
pub use seal::{DOMAIN, Seal, message};
pub use stats::Stats;
pub use verify::{Verdict, check, verify_day};
pub use writer::{READER, run};
