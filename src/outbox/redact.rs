//! In-place redaction of chosen JSON members, for a data subject's erasure (GDPR Art. 17).
//!
//! The outbox is an append-only log whose positions are sequence numbers over whole lines, so
//! records cannot be removed without renumbering what readers have committed. Instead the
//! members to erase are overwritten with spaces: JSON allows whitespace between tokens, so the
//! line stays one valid JSON object of the same length, now without those members, and every
//! position and byte offset stays where it was. Only complete lines below the published tail are
//! touched; the writer only ever appends beyond it, so no lock is taken and calls are not held
//! up while a large log is searched.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use super::{Error, Outbox, segment};

/// Byte ranges of one line to blank; empty for lines to leave alone.
pub type Ranges = Vec<Range<usize>>;

impl Outbox {
    /// Blanks, in every line on disk, the ranges `choose` returns for it, and fsyncs each
    /// changed segment. Returns how many lines were changed.
    pub fn redact(&self, mut choose: impl FnMut(&[u8]) -> Ranges) -> Result<u64, Error> {
        let dir = self.dir().to_path_buf();
        let tail = *self.inner.shared.tail.borrow();
        let mut changed = 0;
        for base in segment::list(&dir)? {
            let name = segment::name(base);
            let io = |what| move |e| Error::io(what, segment::name(base), e);
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(&name))
            {
                Ok(file) => file,
                // Retention removed it meanwhile: nothing left to erase there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("opening")(e)),
            };
            let limit = if base == tail.base {
                tail.len
            } else {
                u64::MAX
            };
            let mut reader = BufReader::new(file.try_clone().map_err(io("opening"))?);
            let (mut offset, mut line, mut dirty) = (0u64, Vec::new(), false);
            while offset < limit {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(io("reading"))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                let ranges = choose(&line);
                for range in &ranges {
                    let Some(bytes) = line.get(range.clone()) else {
                        continue;
                    };
                    let spaces = vec![b' '; bytes.len()];
                    file.write_all_at(&spaces, offset + range.start as u64)
                        .map_err(io("redacting"))?;
                    dirty = true;
                }
                changed += u64::from(!ranges.is_empty());
                offset += n as u64;
            }
            if dirty {
                file.sync_data().map_err(io("syncing"))?;
            }
        }
        Ok(changed)
    }
}

/// The range of the member `"name":"…"` in a compact JSON line together with the comma that
/// follows it, when its string value has no escapes (true of every pseudonym and region we
/// write). `None` when the member is absent.
pub fn string_member<'a>(line: &'a [u8], name: &str) -> Option<(Range<usize>, &'a [u8])> {
    let key = format!("\"{name}\":\"");
    let start = line.windows(key.len()).position(|w| w == key.as_bytes())?;
    let value_start = start + key.len();
    let value_len = line.get(value_start..)?.iter().position(|&b| b == b'"')?;
    let value = line.get(value_start..value_start + value_len)?;
    if value.contains(&b'\\') {
        return None;
    }
    let mut end = value_start + value_len + 1;
    if line.get(end) == Some(&b',') {
        end += 1;
    }
    Some((start..end, value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::outbox::{Options, Position, scan};

    #[tokio::test]
    async fn blanked_members_leave_valid_lines_of_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), Options::default()).unwrap();
        let lines: [&[u8]; 3] = [
            br#"{"a":1,"caller_pseudonym":"aaaa","caller_withheld":false,"caller_region":"+49 30","z":2}"#,
            br#"{"a":2,"caller_pseudonym":"bbbb","caller_withheld":false}"#,
            br#"{"a":3,"caller_withheld":true}"#,
        ];
        outbox.append_batch(&lines).await.unwrap();
        outbox.flush().await.unwrap();
        let before: Vec<_> = scan(dir.path(), Position(0))
            .unwrap()
            .map(|r| r.unwrap().line.len())
            .collect();
        let changed = outbox
            .redact(|line| match string_member(line, "caller_pseudonym") {
                Some((range, b"aaaa")) => {
                    let mut ranges = vec![range];
                    ranges.extend(string_member(line, "caller_region").map(|(r, _)| r));
                    ranges
                }
                _ => Vec::new(),
            })
            .unwrap();
        assert_eq!(changed, 1);
        let after: Vec<_> = scan(dir.path(), Position(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            after.iter().map(|r| r.line.len()).collect::<Vec<_>>(),
            before
        );
        let first: serde_json::Value = serde_json::from_slice(&after[0].line).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"a":1,"caller_withheld":false,"z":2})
        );
        let second: serde_json::Value = serde_json::from_slice(&after[1].line).unwrap();
        assert_eq!(second["caller_pseudonym"], "bbbb");
        // New appends after a redaction land where they should.
        outbox.append_batch(&[b"{\"a\":4}"]).await.unwrap();
        assert_eq!(outbox.end().unwrap(), Position(4));
    }
}
