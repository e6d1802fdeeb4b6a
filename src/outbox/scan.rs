//! Synchronous scan of the log for the CLI (`calltrackd events tail`), possibly in another
//! process than the daemon. Read-only and lock-free: it never truncates, and a line the daemon is
//! writing right now (no '\n' yet at the end of the newest segment) ends the scan instead of
//! being reported; scanning again from the next position picks it up. Damaged lines are passed
//! over by the rules of `reader.rs`, uncounted (the daemon's readers count them).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Error, Position, Record, recover, segment};

/// Iterator over records from a position onward; see [`scan`].
pub struct Scan {
    dir: PathBuf,
    bases: Vec<u64>,
    idx: usize,
    file: Option<BufReader<File>>,
    seq: u64,
    from: u64,
    done: bool,
}

/// Iterates every record with position >= `from` in the outbox directory `dir`, in order.
/// Records already removed by retention are silently not there (the first record tells where
/// the log starts).
pub fn scan(dir: impl AsRef<Path>, from: Position) -> Result<Scan, Error> {
    let dir = dir.as_ref().to_path_buf();
    let bases = segment::list(&dir)?;
    let idx = bases.iter().rposition(|&b| b <= from.0).unwrap_or(0);
    Ok(Scan {
        seq: bases.get(idx).copied().unwrap_or(0),
        dir,
        bases,
        idx,
        file: None,
        from: from.0,
        done: false,
    })
}

impl Scan {
    fn step(&mut self) -> Result<Option<Record>, Error> {
        loop {
            let Some(&base) = self.bases.get(self.idx) else {
                return Ok(None);
            };
            let file = match &mut self.file {
                Some(f) => f,
                None => self
                    .file
                    .insert(BufReader::new(segment::open_read(&self.dir, base)?)),
            };
            let mut line = Vec::new();
            file.read_until(b'\n', &mut line)
                .map_err(|e| Error::io("reading", segment::name(base), e))?;
            let next_base = self.bases.get(self.idx + 1).copied();
            if line.last() != Some(&b'\n') {
                let Some(next_base) = next_base else {
                    return Ok(None);
                };
                // The end of a sealed segment: the same resynchronisation as `Reader` (a cut
                // fragment is no record; the next segment's base is where numbering goes on).
                self.seq = next_base;
                self.idx += 1;
                self.file = None;
                continue;
            }
            line.pop();
            let seq = self.seq;
            self.seq += 1;
            let beyond = next_base.is_some_and(|b| seq >= b);
            if seq >= self.from && !beyond && recover::is_json(&line) {
                return Ok(Some(Record {
                    position: Position(seq),
                    line: Bytes::from(line),
                }));
            }
        }
    }
}

impl Iterator for Scan {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}
