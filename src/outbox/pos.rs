//! Durable reader positions: `readers/<name>.pos` holds the next sequence the reader wants, as
//! decimal text and a line feed. Replaced with `atomic::replace` (0640 whatever the umask) so a
//! crash leaves either the old or the new position, never a torn one.

use std::path::{Path, PathBuf};

use super::Error;
use super::segment::FILE_MODE;

/// Reader names become file names, so they are restricted to a safe alphabet.
pub(super) fn check_name(name: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(Error::ReaderName) }
}

fn label(name: &str) -> String {
    format!("readers/{name}.pos")
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join("readers").join(format!("{name}.pos"))
}

/// The stored next sequence of reader `name`, or `None` if it never committed.
pub(super) fn load(dir: &Path, name: &str) -> Result<Option<u64>, Error> {
    check_name(name)?;
    let text = match std::fs::read(path(dir, name)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", label(name), e)),
    };
    parse(&text)
        .map(Some)
        .ok_or_else(|| Error::corrupt(label(name), "not a decimal position"))
}

fn parse(text: &[u8]) -> Option<u64> {
    let digits = text.strip_suffix(b"\n")?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub(super) fn store(dir: &Path, name: &str, next: u64) -> Result<(), Error> {
    check_name(name)?;
    crate::atomic::replace(
        &dir.join("readers"),
        &format!("{name}.pos"),
        format!("{next}\n").as_bytes(),
        FILE_MODE,
    )
    .map_err(|e| Error::io("writing", label(name), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_text_must_be_digits_and_newline() {
        assert_eq!(parse(b"42\n"), Some(42));
        assert_eq!(parse(b"42"), None);
        assert_eq!(parse(b"\n"), None);
        assert_eq!(parse(b"-1\n"), None);
        assert_eq!(parse(b"99999999999999999999\n"), None);
    }

    #[test]
    fn reader_names_are_restricted() {
        assert!(check_name("kafka").is_ok());
        assert!(check_name("tail_2-x").is_ok());
        for bad in ["", "../x", "Kafka", "a b", &"x".repeat(65)] {
            assert!(matches!(check_name(bad), Err(Error::ReaderName)), "{bad}");
        }
    }
}
