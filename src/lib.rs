//! calltrackd: calls and CDRs come in, become minimized events, and go out.

mod atomic;
pub mod call;
pub mod cdr;
pub mod config;
pub mod daemon;
pub mod data_dir;
pub mod evidence;
pub mod flow;
pub mod media;
pub mod ops;
pub mod outbox;
pub mod sink;
pub mod sip;
