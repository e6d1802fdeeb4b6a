//! Checking a day: recompute the chain over the day file, then check the seal against the
//! public key. `check` is sans-IO (bytes in, a verdict out) and is what both the daemon (before
//! it extends a day) and `calltrackd evidence verify` run; `verify_day` reads the files.

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;
use ed25519_dalek::VerifyingKey;

use super::layout::{Layout, day_name, read_optional};
use super::{Chain, Entry, EvidenceError, Seal, fingerprint, line};

/// The outcome of checking one day, as one line for the operator or auditor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok {
        count: u64,
    },
    /// No day file.
    NoFile,
    /// Line `line` (1-based) is not an evidence line at all.
    Malformed {
        line: u64,
    },
    /// Line `line` does not link to the lines before it: it, or one before it, was changed,
    /// removed or moved.
    Chain {
        line: u64,
    },
    /// Lines exist but no seal does.
    NoSeal {
        lines: u64,
    },
    SealUnreadable,
    WrongDay {
        sealed: String,
    },
    /// The seal names another key than the one given.
    KeyMismatch {
        sealed: String,
        given: String,
    },
    Signature,
    /// The seal covers more lines than the file has: lines were cut from the end.
    SealAhead {
        sealed: u64,
        lines: u64,
    },
    /// The chain at the sealed count is not the sealed head: lines were rewritten with a
    /// recomputed chain.
    HeadMismatch {
        count: u64,
    },
    Unsealed {
        unsealed: u64,
    },
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok { .. })
    }

    /// A day the writer may extend and seal: intact, with at most a tail it has not sealed yet
    /// (a crash between the append and the seal).
    pub(super) fn extendable(&self) -> bool {
        matches!(
            self,
            Verdict::Ok { .. }
                | Verdict::NoFile
                | Verdict::NoSeal { .. }
                | Verdict::Unsealed { .. }
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok { count } => {
                write!(f, "OK: {count} lines, chain intact, seal signature valid")
            }
            Verdict::NoFile => f.write_str("FAILED: no evidence file for this day"),
            Verdict::Malformed { line } => write!(f, "FAILED: line {line} is not an evidence line"),
            Verdict::Chain { line } => write!(f, "FAILED: line {line} breaks the chain"),
            Verdict::NoSeal { lines } => write!(
                f,
                "FAILED: {lines} lines after the last seal are unsealed (there is no seal)"
            ),
            Verdict::SealUnreadable => f.write_str("FAILED: the seal file is not an evidence seal"),
            Verdict::WrongDay { sealed } => {
                write!(f, "FAILED: the seal is for another day ({sealed})")
            }
            Verdict::KeyMismatch { sealed, given } => write!(
                f,
                "FAILED: signature invalid: sealed with key {sealed}, not the given key {given}"
            ),
            Verdict::Signature => f.write_str("FAILED: signature invalid"),
            Verdict::SealAhead { sealed, lines } => write!(
                f,
                "FAILED: the seal covers {sealed} lines but the file has {lines}: lines were removed"
            ),
            Verdict::HeadMismatch { count } => write!(
                f,
                "FAILED: the chain at line {count} is not the sealed chain head: lines were rewritten"
            ),
            Verdict::Unsealed { unsealed } => {
                write!(
                    f,
                    "FAILED: {unsealed} lines after the last seal are unsealed"
                )
            }
        }
    }
}

/// What walking the day file found, for the writer to continue from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Walk {
    pub chain: Chain,
    /// Bytes of whole lines; anything after is a line still being written (or torn by a crash).
    pub complete: usize,
}

/// Checks one day. A last line without its newline is one still being written and is ignored.
pub fn check(day: NaiveDate, file: &[u8], seal: Option<&[u8]>, key: &VerifyingKey) -> Verdict {
    check_with(day, file, seal, key, |_| {}).0
}

/// `check`, handing every entry to `each` and returning where the chain ends when every line
/// links.
pub(super) fn check_with(
    day: NaiveDate,
    file: &[u8],
    seal: Option<&[u8]>,
    key: &VerifyingKey,
    each: impl FnMut(&Entry),
) -> (Verdict, Option<Walk>) {
    let seal = seal.map(Seal::parse);
    let sealed_count = seal.as_ref().and_then(|s| s.as_ref().map(|s| s.count));
    let (walk, sealed_head) = match walk(file, sealed_count, each) {
        Ok(found) => found,
        Err(verdict) => return (verdict, None),
    };
    let lines = walk.chain.count;
    let verdict = match seal {
        None if lines == 0 => Verdict::NoFile,
        None => Verdict::NoSeal { lines },
        Some(None) => Verdict::SealUnreadable,
        Some(Some(seal)) => judge(day, &seal, lines, sealed_head, key),
    };
    (verdict, Some(walk))
}

/// The seal against the walked file. The signature is checked before the seal's count and head
/// are believed.
fn judge(
    day: NaiveDate,
    seal: &Seal,
    lines: u64,
    sealed_head: Option<[u8; 32]>,
    key: &VerifyingKey,
) -> Verdict {
    if seal.day != day_name(day) {
        return Verdict::WrongDay {
            sealed: seal.day.clone(),
        };
    }
    let given = fingerprint(key);
    if seal.key_id != given {
        return Verdict::KeyMismatch {
            sealed: seal.key_id.clone(),
            given,
        };
    }
    if !seal.signed_by(key) {
        return Verdict::Signature;
    }
    if seal.count > lines {
        return Verdict::SealAhead {
            sealed: seal.count,
            lines,
        };
    }
    if sealed_head.map(hex::encode).as_deref() != Some(seal.chain_head.as_str()) {
        return Verdict::HeadMismatch { count: seal.count };
    }
    if lines > seal.count {
        return Verdict::Unsealed {
            unsealed: lines - seal.count,
        };
    }
    Verdict::Ok { count: lines }
}

/// Recomputes the chain over the whole lines of `file`; also returns the head after `at` lines.
fn walk(
    file: &[u8],
    at: Option<u64>,
    mut each: impl FnMut(&Entry),
) -> Result<(Walk, Option<[u8; 32]>), Verdict> {
    let complete = file.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut chain = Chain::default();
    let mut head_at = (at == Some(0)).then_some(chain.head);
    let whole = complete.checked_sub(1).map(|end| &file[..end]);
    for text in whole.into_iter().flat_map(|w| w.split(|&b| b == b'\n')) {
        let number = chain.count + 1;
        let Some((entry, canonical, stored)) = line::split(text) else {
            return Err(Verdict::Malformed { line: number });
        };
        if chain.push(&canonical) != stored {
            return Err(Verdict::Chain { line: number });
        }
        each(&entry);
        if at == Some(chain.count) {
            head_at = Some(chain.head);
        }
    }
    Ok((Walk { chain, complete }, head_at))
}

/// Reads and checks `day` in `layout`. Safe beside the running daemon: it only reads, the seal
/// is read before the lines (so the file holds at least what the seal covers), and a tail the
/// daemon has not sealed yet is looked at once more after it had time to seal (it seals about
/// once a second).
pub fn verify_day(
    layout: &Layout,
    day: NaiveDate,
    key: &VerifyingKey,
) -> Result<Verdict, EvidenceError> {
    let once = || -> Result<Verdict, EvidenceError> {
        let seal = read_optional(&layout.seal_file(day))?;
        let file = read_optional(&layout.day_file(day))?.unwrap_or_default();
        Ok(check(day, &file, seal.as_deref(), key))
    };
    let verdict = once()?;
    if matches!(verdict, Verdict::Unsealed { .. } | Verdict::NoSeal { .. }) {
        std::thread::sleep(Duration::from_millis(1500));
        return once();
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::evidence::line::tests::entry;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    /// A day file of `n` lines and its seal over all of them.
    fn sealed(n: u8) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut chain = Chain::default();
        let lines = (1..=n)
            .map(|i| {
                let canonical = entry(i).canonical();
                let link = chain.push(&canonical);
                line::encode(&canonical, &link)
            })
            .collect();
        let seal = Seal::sign("2026-11-24", &chain, &key()).to_bytes();
        (lines, seal)
    }

    fn verdict(lines: &[Vec<u8>], seal: &[u8]) -> Verdict {
        check(day(), &lines.concat(), Some(seal), &key().verifying_key())
    }

    #[test]
    fn an_intact_sealed_day_verifies() {
        let (lines, seal) = sealed(5);
        assert_eq!(verdict(&lines, &seal), Verdict::Ok { count: 5 });
        assert_eq!(
            verdict(&lines, &seal).to_string(),
            "OK: 5 lines, chain intact, seal signature valid"
        );
    }

    #[test]
    fn a_changed_line_breaks_the_chain_at_that_line() {
        let (mut lines, seal) = sealed(5);
        let text = String::from_utf8(lines[2].clone()).unwrap();
        lines[2] = text.replace("\"complete\"", "\"hung_up\"").into_bytes();
        let v = verdict(&lines, &seal);
        assert_eq!(v, Verdict::Chain { line: 3 });
        assert_eq!(v.to_string(), "FAILED: line 3 breaks the chain");
    }

    #[test]
    fn a_dropped_line_breaks_the_chain_and_a_dropped_last_line_shows_in_the_count() {
        let (mut lines, seal) = sealed(5);
        let mut last_dropped = lines.clone();
        last_dropped.pop();
        lines.remove(1);
        assert_eq!(verdict(&lines, &seal), Verdict::Chain { line: 2 });
        let v = verdict(&last_dropped, &seal);
        assert_eq!(
            v,
            Verdict::SealAhead {
                sealed: 5,
                lines: 4
            }
        );
        assert!(v.to_string().contains("lines were removed"), "{v}");
    }

    #[test]
    fn swapped_lines_break_the_chain() {
        let (mut lines, seal) = sealed(5);
        lines.swap(3, 4);
        assert_eq!(verdict(&lines, &seal), Verdict::Chain { line: 4 });
    }

    #[test]
    fn a_rewritten_day_with_a_recomputed_chain_fails_on_the_sealed_head() {
        let (_, seal) = sealed(5);
        let mut chain = Chain::default();
        let forged: Vec<Vec<u8>> = (1..=5)
            .map(|i| {
                let mut e = entry(i);
                if i == 2 {
                    e.outcome = crate::call::Outcome::Complete;
                    e.played_seconds = crate::call::Seconds::from_tenths(99);
                }
                let canonical = e.canonical();
                let link = chain.push(&canonical);
                line::encode(&canonical, &link)
            })
            .collect();
        let v = verdict(&forged, &seal);
        assert_eq!(v, Verdict::HeadMismatch { count: 5 });
        assert!(v.to_string().contains("lines were rewritten"), "{v}");
    }

    #[test]
    fn another_key_fails_with_its_own_verdict() {
        let (lines, seal) = sealed(3);
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let v = check(day(), &lines.concat(), Some(&seal), &other);
        assert!(matches!(v, Verdict::KeyMismatch { .. }), "{v:?}");
        assert!(
            v.to_string()
                .starts_with("FAILED: signature invalid: sealed with key"),
            "{v}"
        );
        // A seal that claims the other key's id still has no valid signature.
        let mut claimed = Seal::parse(&seal).unwrap();
        claimed.key_id = fingerprint(&other);
        let v = check(day(), &lines.concat(), Some(&claimed.to_bytes()), &other);
        assert_eq!(v, Verdict::Signature);
        assert_eq!(v.to_string(), "FAILED: signature invalid");
    }

    #[test]
    fn lines_after_the_seal_are_reported_unsealed() {
        let (mut lines, seal) = sealed(3);
        let (more, _) = sealed(5);
        lines.extend(more[3..].iter().cloned());
        let v = verdict(&lines, &seal);
        assert_eq!(v, Verdict::Unsealed { unsealed: 2 });
        assert_eq!(
            v.to_string(),
            "FAILED: 2 lines after the last seal are unsealed"
        );
        assert!(v.extendable());
    }

    #[test]
    fn seal_of_another_day_missing_or_unreadable_seal_and_foreign_lines_fail() {
        let (lines, seal) = sealed(2);
        let public = key().verifying_key();
        let other_day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert!(matches!(
            check(other_day, &lines.concat(), Some(&seal), &public),
            Verdict::WrongDay { .. }
        ));
        assert_eq!(
            check(day(), &lines.concat(), None, &public),
            Verdict::NoSeal { lines: 2 }
        );
        assert_eq!(
            check(day(), &lines.concat(), Some(b"{}"), &public),
            Verdict::SealUnreadable
        );
        assert_eq!(check(day(), b"", None, &public), Verdict::NoFile);
        let mut foreign = lines.clone();
        foreign.insert(1, b"{\"call_key\":\"0123\"}\n".to_vec());
        assert_eq!(verdict(&foreign, &seal), Verdict::Malformed { line: 2 });
        let mut blank = lines;
        blank.insert(1, b"\n".to_vec());
        assert_eq!(verdict(&blank, &seal), Verdict::Malformed { line: 2 });
    }

    #[test]
    fn a_line_still_being_written_is_not_counted() {
        let (lines, seal) = sealed(3);
        let mut file = lines.concat();
        let (more, _) = sealed(4);
        file.extend_from_slice(&more[3][..40]);
        assert_eq!(
            check(day(), &file, Some(&seal), &key().verifying_key()),
            Verdict::Ok { count: 3 }
        );
    }
}
