//! Errors of the outbox, in fixed words: a `Display` never echoes an event line, only our own
//! file names (which carry sequence numbers or reader names from the config, no personal data).

use std::io;

/// What went wrong in the outbox, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Appending would push the bytes on disk past `Options::max_bytes` (the SIP edge answers 503).
    #[error("outbox is in use by another process (its LOCK file is held)")]
    Locked,
    #[error("outbox is full")]
    Full,
    /// An event line contained a line feed, which would split it into two records.
    #[error("event line contains a line feed")]
    Newline,
    /// An event line was empty.
    #[error("event line is empty")]
    Empty,
    /// An event line was not one complete JSON value.
    #[error("event line is not valid JSON")]
    NotJson,
    /// A file operation failed; `file` is relative to the outbox directory.
    #[error("outbox {op} failed on {file}")]
    Io {
        op: &'static str,
        file: String,
        #[source]
        source: io::Error,
    },
    /// A file's contents do not have the shape we write.
    #[error("outbox file {file} is corrupt: {reason}")]
    Corrupt { file: String, reason: &'static str },
    /// A write could not be rolled back or an fdatasync failed earlier; the state of the page
    /// cache is unknown, so the process must restart and recover from what is on disk.
    #[error("outbox storage failed earlier, restart required")]
    Poisoned,
    /// The fdatasync covering this append failed; the line may or may not be on disk.
    #[error("outbox fdatasync failed")]
    SyncFailed,
    /// A reader name is outside the allowed alphabet or length.
    #[error("reader name must be 1 to 64 characters of a-z, 0-9, '-' or '_'")]
    ReaderName,
    /// A reader of that name is already open in this process.
    #[error("reader is already open")]
    ReaderBusy,
    /// A reader tried to commit a position it has not been handed yet.
    #[error("commit position was not yet delivered to this reader")]
    CommitAhead,
    /// An option is out of range.
    #[error("invalid outbox option: {0}")]
    Options(&'static str),
    /// A background blocking task of the outbox did not finish.
    #[error("outbox background task failed")]
    Background,
}

impl Error {
    pub(super) fn io(op: &'static str, file: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op,
            file: file.into(),
            source,
        }
    }

    pub(super) fn corrupt(file: impl Into<String>, reason: &'static str) -> Self {
        Error::Corrupt {
            file: file.into(),
            reason,
        }
    }
}
