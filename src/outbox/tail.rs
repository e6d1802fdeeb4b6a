//! `calltrackd events tail`: prints outbox records read-only (through `scan`), so it is safe
//! beside a running daemon and never becomes a second writer.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{Error, Position, scan};

/// Records shown when no start position is given.
const LAST: usize = 10;

/// Prints records from `from` (or the last ten); with `follow`, keeps polling for new ones.
pub fn print(
    dir: &Path,
    from: Option<u64>,
    follow: bool,
    out: &mut impl Write,
) -> Result<(), Error> {
    // No outbox yet (a fresh data directory): nothing to show, and nothing is created.
    while !dir.exists() {
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut next = match from {
        Some(p) => p,
        None => {
            let mut last: VecDeque<u64> = VecDeque::with_capacity(LAST);
            for record in scan(dir, Position(0))? {
                if last.len() == LAST {
                    last.pop_front();
                }
                last.push_back(record?.position.0);
            }
            last.front().copied().unwrap_or(0)
        }
    };
    loop {
        for record in scan(dir, Position(next))? {
            let record = record?;
            if record.position.0 < next {
                continue;
            }
            let _ = out.write_all(&record.line);
            let _ = out.write_all(b"\n");
            next = record.position.0 + 1;
        }
        let _ = out.flush();
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
