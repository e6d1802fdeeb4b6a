//! Sans-IO recovery of the last segment after a crash: how many bytes and lines to keep.
//!
//! Every record is written with one write(2) of `line + '\n'`, so a killed process leaves at
//! most one incomplete line at the end; a power loss can additionally leave a zero-filled or
//! garbled tail. We cut (a) bytes after the last '\n' and (b) the last complete line if it is
//! not one JSON value. Only the tail is examined: lines before it were acknowledged and are
//! never dropped on a guess.

/// What to keep of a segment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recovery {
    /// Byte length to truncate the segment to.
    pub keep: usize,
    /// Complete lines within `keep`.
    pub lines: u64,
    /// Torn lines cut away (0, 1 or 2).
    pub cut: u64,
}

pub(super) fn recover(bytes: &[u8]) -> Recovery {
    let mut keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut cut = u64::from(keep < bytes.len());
    let mut lines = bytes[..keep].iter().filter(|&&b| b == b'\n').count() as u64;
    if keep > 0 {
        let body = &bytes[..keep - 1];
        let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if !is_json(&body[start..]) {
            keep = start;
            lines -= 1;
            cut += 1;
        }
    }
    Recovery { keep, lines, cut }
}

/// True when `line` is exactly one JSON value (what `append` accepts).
pub(super) fn is_json(line: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_segment_is_kept_whole() {
        let r = recover(b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(
            r,
            Recovery {
                keep: 16,
                lines: 2,
                cut: 0
            }
        );
    }

    #[test]
    fn bytes_after_last_newline_are_cut() {
        let r = recover(b"{\"a\":1}\n{\"b\":");
        assert_eq!(
            r,
            Recovery {
                keep: 8,
                lines: 1,
                cut: 1
            }
        );
    }

    #[test]
    fn zero_filled_tail_line_is_cut() {
        let r = recover(b"{\"a\":1}\n\0\0\0\n");
        assert_eq!(
            r,
            Recovery {
                keep: 8,
                lines: 1,
                cut: 1
            }
        );
    }

    #[test]
    fn empty_and_lone_partial_segments_keep_nothing() {
        assert_eq!(
            recover(b""),
            Recovery {
                keep: 0,
                lines: 0,
                cut: 0
            }
        );
        assert_eq!(
            recover(b"{\"a"),
            Recovery {
                keep: 0,
                lines: 0,
                cut: 1
            }
        );
    }
}
