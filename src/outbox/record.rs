//! Positions and records as consumers see them.

use std::fmt;

use bytes::Bytes;

/// The global sequence number of an event: the first line ever appended is 0, each further line
/// is one more, across segments and restarts. Gapless, so a consumer can count what it skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

impl Position {
    /// The position after this one.
    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One event as read back: its position and its JSON line without the trailing '\n'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub position: Position,
    pub line: Bytes,
}

/// The consecutive positions one `append_batch` got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Position of the batch's first line (the position the next line would get, if empty).
    pub first: Position,
    pub count: u64,
}

impl Span {
    /// Position of the batch's last line, if it had any.
    pub fn last(&self) -> Option<Position> {
        self.count
            .checked_sub(1)
            .map(|n| Position(self.first.0 + n))
    }
}
