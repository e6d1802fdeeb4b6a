//! Tuning knobs of the outbox and their safe defaults.

use std::time::Duration;

use super::Error;

/// When `append` returns relative to fdatasync (`[outbox] durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `append` returns after write(2): the line survives a killed process at once and a power
    /// loss once the background syncer's next fdatasync ran (every `sync_interval`).
    #[default]
    Interval,
    /// `append` returns after an fdatasync covering the line. Group commit: one fdatasync serves
    /// every append written before it started; appends arriving meanwhile share the next one.
    Sync,
}

/// Options of [`super::Outbox::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Roll to a new segment once the active one would grow past this (a batch is never split,
    /// so a segment can exceed it by at most one batch).
    pub segment_bytes: u64,
    /// Cap on the bytes of all segments on disk; appends beyond it fail with `Error::Full`.
    pub max_bytes: u64,
    /// Period of the background fdatasync under `Durability::Interval`.
    pub sync_interval: Duration,
    pub durability: Durability,
}

impl Default for Options {
    /// The `[outbox]` defaults: declared once, in `config.rs`.
    fn default() -> Self {
        super::Settings::default().options()
    }
}

impl Options {
    pub(super) fn check(&self) -> Result<(), Error> {
        if self.segment_bytes == 0 {
            return Err(Error::Options("segment_bytes must be positive"));
        }
        if self.max_bytes == 0 {
            return Err(Error::Options("max_bytes must be positive"));
        }
        if self.sync_interval.is_zero() {
            return Err(Error::Options("sync_interval must be positive"));
        }
        Ok(())
    }
}
