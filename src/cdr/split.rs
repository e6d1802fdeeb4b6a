//! Cuts a CSV byte stream (RFC 4180) into records under the feed's [`Limits`], before any CSV
//! parsing, so that no record can grow without bound.
//!
//! A record ends at an LF outside quotes. A quoted field may hold newlines, but a record that
//! breaks a bound — too long a line, too many bytes, lines or fields — or whose quoted field
//! ran over a newline and then closes with anything but a delimiter or the line end (what an
//! unbalanced quote meeting the next row's quoted cell looks like) is cut. Resync is at the
//! next *physical* line after the record's first line, never at the next newline outside
//! quotes: after an unbalanced quote, "outside quotes" is inverted for the rest of the file,
//! while carrier exports are one record per line, so the next line is the next good row. The
//! bytes already read past the first line are scanned again, so nothing is lost.
//!
//! A last line without LF is held back unless the stream is known to be complete
//! (`final_tail`): a stalled upload ends mid-row, and a truncated row could map to a wrong
//! number or time rather than fail.

use std::io::{self, BufRead};

use super::limits::{Bound, Limits};

/// Bytes of a cut record's first line kept for the quarantine.
pub const RAW_KEPT: usize = 1024;

/// One record, or why it was cut.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    /// 1-based line the record starts on.
    pub line: u64,
    /// Stream offset just after the record (its LF included).
    pub end: u64,
    /// Line the next record starts on.
    pub next_line: u64,
    /// The record's bytes without its LF, or the bound it broke and the start of its first
    /// line.
    pub record: Result<Vec<u8>, (Bound, Vec<u8>)>,
}

/// Splits one stream.
pub struct Splitter<R> {
    inner: R,
    limits: Limits,
    delimiter: u8,
    quote: u8,
    final_tail: bool,
    /// Offset of the next byte scanned, and the line it is on.
    pos: u64,
    line: u64,
    /// Bytes read past a cut record's first line, to be scanned again.
    replay: Vec<u8>,
    replay_at: usize,
    held: bool,
}

/// The scan state of one record.
#[derive(Default)]
struct Scan {
    buf: Vec<u8>,
    /// Index in `buf` just after the first LF (inside quotes), and the offset there.
    first_line: Option<(usize, u64)>,
    in_quote: bool,
    quote_pending: bool,
    crossed: bool,
    field_start: bool,
    fields: usize,
    lines: u64,
    line_len: usize,
}

enum Step {
    Done,
    Cut(Bound),
}

impl<R: BufRead> Splitter<R> {
    /// Splits `inner`, whose first byte is at `offset` on line `line`.
    pub fn new(
        inner: R,
        limits: Limits,
        delimiter: u8,
        quote: u8,
        offset: u64,
        line: u64,
        final_tail: bool,
    ) -> Self {
        Self {
            inner,
            limits,
            delimiter,
            quote,
            final_tail,
            pos: offset,
            line: line.max(1),
            replay: Vec::new(),
            replay_at: 0,
            held: false,
        }
    }

    /// Whether the stream ended in a record without LF that was held back.
    pub fn held_back(&self) -> bool {
        self.held
    }

    /// The line the record being read starts on.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The offset just after the last record returned.
    pub fn offset(&self) -> u64 {
        self.pos
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        if let Some(&b) = self.replay.get(self.replay_at) {
            self.replay_at += 1;
            self.pos += 1;
            return Ok(Some(b));
        }
        let b = loop {
            match self.inner.fill_buf() {
                Ok(buf) => break buf.first().copied(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if b.is_some() {
            self.inner.consume(1);
            self.pos += 1;
        }
        Ok(b)
    }

    /// The next record, `None` at the end (or at a held-back tail).
    pub fn next_split(&mut self) -> io::Result<Option<Split>> {
        let start = self.pos;
        let line = self.line;
        let mut s = Scan {
            field_start: true,
            fields: 1,
            lines: 1,
            ..Scan::default()
        };
        let step = loop {
            let Some(b) = self.byte()? else {
                return self.at_end(s, start, line);
            };
            s.buf.push(b);
            if let Some(bound) = self.scan(&mut s, b) {
                break Step::Cut(bound);
            }
            if !s.in_quote && !s.quote_pending && b == b'\n' {
                break Step::Done;
            }
        };
        match step {
            Step::Done => {
                s.buf.pop();
                self.line = line + s.lines;
                Ok(Some(Split {
                    line,
                    end: self.pos,
                    next_line: self.line,
                    record: Ok(s.buf),
                }))
            }
            Step::Cut(bound) => self.cut(s, line, bound).map(Some),
        }
    }

    /// Advances the scan state by one byte (already in `buf`); a broken bound cuts.
    fn scan(&self, s: &mut Scan, b: u8) -> Option<Bound> {
        let l = &self.limits;
        if b != b'\n' {
            s.line_len += 1;
        }
        if s.quote_pending {
            s.quote_pending = false;
            if b == self.quote {
                // An escaped quote: still inside the field.
                return self.length(s);
            }
            s.in_quote = false;
            // Across a newline, only a delimiter or the line end may follow a closing quote;
            // anything else is an unbalanced quote that met the next row's quoted cell. On one
            // line, stray text after a quote stays the csv parser's lenient business.
            if s.crossed && b != self.delimiter && b != b'\r' && b != b'\n' {
                return Some(Bound::UnbalancedQuote);
            }
        }
        if s.in_quote {
            if b == self.quote {
                s.quote_pending = true;
            } else if b == b'\n' {
                s.crossed = true;
                s.lines += 1;
                s.line_len = 0;
                if s.first_line.is_none() {
                    s.first_line = Some((s.buf.len(), self.pos));
                }
                if s.lines > l.max_record_lines {
                    return Some(Bound::RecordLines);
                }
            }
        } else if b == self.delimiter {
            s.fields += 1;
            s.field_start = true;
            if s.fields > l.max_fields {
                return Some(Bound::Fields);
            }
        } else if b == self.quote && s.field_start {
            s.in_quote = true;
            s.field_start = false;
        } else if b != b'\n' {
            s.field_start = false;
        }
        self.length(s)
    }

    fn length(&self, s: &Scan) -> Option<Bound> {
        let l = &self.limits;
        if s.line_len > l.max_line_bytes {
            Some(Bound::LineBytes)
        } else if s.buf.len() > l.max_record_bytes {
            Some(Bound::RecordBytes)
        } else {
            None
        }
    }

    /// Cuts the record: its first line goes to the quarantine, reading resumes on the line
    /// after it.
    fn cut(&mut self, s: Scan, line: u64, bound: Bound) -> io::Result<Split> {
        let mut raw = s.buf;
        if let Some((after_first, offset)) = s.first_line {
            // Scan what followed the first line again, before the rest of the stream.
            let mut replay = raw.split_off(after_first);
            replay.extend_from_slice(&self.replay[self.replay_at..]);
            self.replay = replay;
            self.replay_at = 0;
            self.pos = offset;
            raw.pop();
        } else {
            // Still on the first line: drop bytes up to its end without keeping them.
            let ended = raw.last() == Some(&b'\n');
            if ended {
                raw.pop();
            } else {
                loop {
                    match self.byte()? {
                        Some(b'\n') => break,
                        Some(_) => {}
                        None if self.final_tail => break,
                        None => {
                            self.held = true;
                            break;
                        }
                    }
                }
            }
        }
        raw.truncate(RAW_KEPT);
        self.line = line + 1;
        Ok(Split {
            line,
            end: self.pos,
            next_line: self.line,
            record: Err((bound, raw)),
        })
    }

    fn at_end(&mut self, s: Scan, start: u64, line: u64) -> io::Result<Option<Split>> {
        if s.buf.is_empty() {
            return Ok(None);
        }
        if !self.final_tail {
            // Rewind to the record's start: nothing of it is committed or returned.
            self.held = true;
            self.pos = start;
            return Ok(None);
        }
        if s.in_quote && !s.quote_pending {
            return self.cut(s, line, Bound::UnbalancedQuote).map(Some);
        }
        self.line = line + s.lines;
        Ok(Some(Split {
            line,
            end: self.pos,
            next_line: self.line,
            record: Ok(s.buf),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_line_bytes: 40,
            max_record_bytes: 80,
            max_record_lines: 3,
            max_fields: 4,
            ..Limits::default()
        }
    }

    fn split_all(text: &[u8], final_tail: bool) -> (Vec<Split>, bool) {
        let mut s = Splitter::new(text, limits(), b',', b'"', 0, 1, final_tail);
        let mut out = Vec::new();
        while let Some(x) = s.next_split().unwrap() {
            out.push(x);
        }
        (out, s.held_back())
    }

    /// (line, Ok(text) or Err(bound)) of each split.
    fn summary(splits: &[Split]) -> Vec<(u64, Result<String, Bound>)> {
        splits
            .iter()
            .map(|s| {
                let r = match &s.record {
                    Ok(b) => Ok(String::from_utf8_lossy(b).into_owned()),
                    Err((bound, _)) => Err(*bound),
                };
                (s.line, r)
            })
            .collect()
    }

    #[test]
    fn records_end_at_lf_outside_quotes_with_offsets_and_physical_lines() {
        let text = b"a,b\n\"x\ny\",c\nd,e\n";
        let (splits, held) = split_all(text, false);
        assert!(!held);
        assert_eq!(
            summary(&splits),
            [
                (1, Ok("a,b".into())),
                (2, Ok("\"x\ny\",c".into())),
                (4, Ok("d,e".into()))
            ]
        );
        assert_eq!(splits[0].end, 4);
        assert_eq!(splits[1].next_line, 4);
        assert_eq!(splits[2].end, text.len() as u64);
    }

    #[test]
    fn unbalanced_quote_is_cut_at_its_first_line_and_no_later_row_is_lost() {
        // Row 3 opens a quote that never closes; row 5's quoted cell would close it.
        let text = b"h,h\nr2,x\nr3,\"oops\nr4,x\nr5,\"q\"\nr6,x\n";
        let (splits, _) = split_all(text, true);
        assert_eq!(
            summary(&splits),
            [
                (1, Ok("h,h".into())),
                (2, Ok("r2,x".into())),
                (3, Err(Bound::UnbalancedQuote)),
                (4, Ok("r4,x".into())),
                (5, Ok("r5,\"q\"".into())),
                (6, Ok("r6,x".into())),
            ]
        );
        assert_eq!(splits[2].record.as_ref().unwrap_err().1, b"r3,\"oops");
        assert_eq!(splits[2].end, 18, "resume offset is the start of line 4");
        // Without a later quote the line bound cuts it, with the same result.
        let text = b"r1,\"oops\nr2,x\nr3,x\nr4,x\nr5,x\n";
        let (splits, _) = split_all(text, true);
        let s = summary(&splits);
        assert_eq!(s[0], (1, Err(Bound::RecordLines)));
        assert_eq!(s.len(), 5);
        assert_eq!(s[4], (5, Ok("r5,x".into())));
        // At the end of a complete stream: the open quote is cut, the lines after it kept.
        let (splits, _) = split_all(b"r1,x\nr2,\"oops\nr3,x\n", true);
        let s = summary(&splits);
        assert_eq!(s[1], (2, Err(Bound::UnbalancedQuote)));
        assert_eq!(s[2], (3, Ok("r3,x".into())));
    }

    #[test]
    fn long_lines_records_and_wide_rows_are_cut_and_the_next_line_read() {
        let long = format!("{}\nok,1\n", "x".repeat(100));
        let (splits, _) = split_all(long.as_bytes(), true);
        assert_eq!(
            summary(&splits),
            [(1, Err(Bound::LineBytes)), (2, Ok("ok,1".into()))]
        );
        assert_eq!(splits[0].end, 101);
        let wide = b"a,b,c,d,e,f\nok,2\n";
        let (splits, _) = split_all(wide, true);
        assert_eq!(
            summary(&splits),
            [(1, Err(Bound::Fields)), (2, Ok("ok,2".into()))]
        );
        assert_eq!(splits[0].record.as_ref().unwrap_err().1, b"a,b,c,d,");
        // Quoted delimiters are not fields.
        let (splits, _) = split_all(b"\"a,b,c,d,e\",x\n", true);
        assert!(splits[0].record.is_ok());
        // Three 30-byte lines inside one quoted field: each line fits, the record does not.
        let line = "y".repeat(29);
        let text = format!("\"{line}\n{line}\n{line}\n\",z\nok,3\n");
        let (splits, _) = split_all(text.as_bytes(), true);
        let s = summary(&splits);
        assert_eq!(s[0], (1, Err(Bound::RecordBytes)));
        assert_eq!(s.last().unwrap(), &(5, Ok("ok,3".into())));
    }

    #[test]
    fn a_tail_without_lf_is_held_back_unless_the_stream_is_final() {
        let text = b"a,1\nb,2\nc,3";
        let (splits, held) = split_all(text, false);
        assert!(held);
        assert_eq!(splits.len(), 2);
        assert_eq!(splits[1].end, 8, "nothing of the tail is committed");
        let (splits, held) = split_all(text, true);
        assert!(!held);
        assert_eq!(summary(&splits)[2], (3, Ok("c,3".into())));
        // An open multi-line quote at the end may be an upload in progress: held too.
        let (splits, held) = split_all(b"a,1\nb,\"x\ny", false);
        assert!(held);
        assert_eq!(splits.len(), 1);
        // Escaped quotes and a quote at the very end are not unbalanced.
        let (splits, _) = split_all(b"a,\"say \"\"hi\"\"\"", true);
        assert!(splits[0].record.is_ok());
    }

    #[test]
    fn escaped_quote_followed_by_newline_inside_quotes_continues_the_field() {
        let text = b"a,\"x\"\"\ny\"\nb,1\n";
        let (splits, _) = split_all(text, true);
        assert_eq!(
            summary(&splits),
            [(1, Ok("a,\"x\"\"\ny\"".into())), (3, Ok("b,1".into()))]
        );
    }
}
