//! A gzip (RFC 1952, multi-member) stream that stops at the feed's bounds: at most
//! `max_decompressed_bytes` out, and at most `max_gzip_ratio` bytes out per byte in (checked
//! once [`RATIO_FLOOR`] bytes are out). A gzip bomb expands a thousandfold or more; without the
//! bounds it fills memory or the disk before the first row is refused.
//!
//! A broken bound is an `io::Error` carrying the [`Bound`]; [`bound_of`] recovers it, so the
//! reader can quarantine the rest of the file under that reason instead of failing it.

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;

use super::limits::{Bound, Limits, RATIO_FLOOR};

/// Counts the compressed bytes the decoder pulls.
pub struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The decompressed stream of `R`, bounded.
pub struct Bounded<R: Read> {
    decoder: MultiGzDecoder<Counting<R>>,
    out: u64,
    max_bytes: u64,
    max_ratio: u64,
    broken: Option<Bound>,
}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R, limits: &Limits) -> Self {
        Self {
            decoder: MultiGzDecoder::new(Counting { inner, count: 0 }),
            out: 0,
            max_bytes: limits.max_decompressed_bytes,
            max_ratio: limits.max_gzip_ratio,
            broken: None,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(bound) = self.broken {
            return Err(io::Error::other(bound));
        }
        let n = self.decoder.read(buf)?;
        self.out += n as u64;
        let compressed = self.decoder.get_ref().count.max(1);
        let broken = if self.out > self.max_bytes {
            Some(Bound::DecompressedBytes)
        } else if self.out >= RATIO_FLOOR && self.out > compressed.saturating_mul(self.max_ratio) {
            Some(Bound::GzipRatio)
        } else {
            None
        };
        if let Some(bound) = broken {
            self.broken = Some(bound);
            return Err(io::Error::other(bound));
        }
        Ok(n)
    }
}

/// The bound an error from [`Bounded`] reports.
pub fn bound_of(err: &io::Error) -> Option<Bound> {
    err.get_ref()?.downcast_ref::<Bound>().copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn drain(mut r: impl Read) -> (u64, Option<Bound>) {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (total, None),
                Ok(n) => total += n as u64,
                Err(e) => return (total, bound_of(&e)),
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_ratio_after_the_floor() {
        let bomb = gz(&vec![b'0'; 64 * 1024 * 1024]);
        assert!(bomb.len() < 256 * 1024);
        let (out, bound) = drain(Bounded::new(&bomb[..], &Limits::default()));
        assert_eq!(bound, Some(Bound::GzipRatio));
        assert!(out < 4 * RATIO_FLOOR, "stopped early: {out}");
    }

    #[test]
    fn the_decompressed_size_is_capped() {
        let data: Vec<u8> = (0..3_000_000u32).flat_map(u32::to_le_bytes).collect();
        let limits = Limits {
            max_decompressed_bytes: 2 * 1024 * 1024,
            max_gzip_ratio: 1000,
            ..Limits::default()
        };
        let (out, bound) = drain(Bounded::new(&gz(&data)[..], &limits));
        assert_eq!(bound, Some(Bound::DecompressedBytes));
        assert!(out <= limits.max_decompressed_bytes);
    }

    #[test]
    fn an_ordinary_file_within_bounds_reads_to_the_end() {
        let rows: String = (0..50_000)
            .map(|i| format!("C{i},+4930555{i:05},+493055511000,200\n"))
            .collect();
        let (out, bound) = drain(Bounded::new(&gz(rows.as_bytes())[..], &Limits::default()));
        assert_eq!((out, bound), (rows.len() as u64, None));
        let err = io::Error::other("something else");
        assert_eq!(bound_of(&err), None);
    }
}
