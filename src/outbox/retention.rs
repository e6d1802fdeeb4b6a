//! Retention: deleting whole old segments, oldest first.
//!
//! Two modes, one rule set:
//! - With readers (`Retention::require_readers` non-empty): a segment goes once every named
//!   reader's committed position is past its last record and its last write (mtime) is older
//!   than `min_age`. A required reader that never committed holds everything.
//! - Outbox-only (`apply_age_retention`, or an empty reader list): a segment goes once its last
//!   write is older than the age, whether or not anyone read it.
//!
//! The active segment is never deleted, and deletion stops at the first segment that must stay,
//! so the log remains one gapless run of sequences.

use std::time::{Duration, SystemTime};

use super::{Error, Outbox, pos, segment};

/// What `apply_retention` may delete.
#[derive(Debug, Clone, Copy)]
pub struct Retention<'a> {
    pub min_age: Duration,
    pub require_readers: &'a [&'a str],
}

/// A segment as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seg {
    pub base: u64,
    pub modified: SystemTime,
}

/// How many leading segments of `segs` (ascending) may go. `readers_next` is the lowest next
/// sequence over the required readers, `None` when none is required.
pub(super) fn plan(
    segs: &[Seg],
    active: u64,
    readers_next: Option<u64>,
    cutoff: SystemTime,
) -> usize {
    segs.windows(2)
        .take_while(|w| {
            let (seg, end) = (w[0], w[1].base);
            seg.base < active
                && readers_next.is_none_or(|next| end <= next)
                && seg.modified <= cutoff
        })
        .count()
}

impl Outbox {
    /// Deletes segments per the rules in the module doc; returns the bytes freed. Does blocking
    /// file-system calls: run it from `spawn_blocking` or a dedicated timer thread.
    pub fn apply_retention(&self, r: &Retention<'_>) -> Result<u64, Error> {
        let dir = self.dir();
        let mut readers_next = None;
        for name in r.require_readers {
            let next = pos::load(dir, name)?.unwrap_or(0);
            readers_next = Some(readers_next.map_or(next, |n: u64| n.min(next)));
        }
        let active = self.inner.shared.lock()?.base;
        let cutoff = SystemTime::now()
            .checked_sub(r.min_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);

        let mut segs = Vec::new();
        let mut sizes = Vec::new();
        for base in segment::list(dir)? {
            let meta = std::fs::metadata(dir.join(segment::name(base)))
                .map_err(|e| Error::io("reading metadata", segment::name(base), e))?;
            let modified = meta
                .modified()
                .map_err(|e| Error::io("reading metadata", segment::name(base), e))?;
            segs.push(Seg { base, modified });
            sizes.push(meta.len());
        }
        let n = plan(&segs, active, readers_next, cutoff);
        let mut freed = 0;
        for (seg, size) in segs.iter().zip(&sizes).take(n) {
            let name = segment::name(seg.base);
            std::fs::remove_file(dir.join(&name)).map_err(|e| Error::io("removing", &name, e))?;
            freed += size;
            let mut w = self.inner.shared.lock()?;
            w.total = w.total.saturating_sub(*size);
        }
        if n > 0 {
            segment::sync_dir(dir, ".")?;
            tracing::info!(
                segments = n,
                bytes = freed,
                "Outbox retention removed segments."
            );
        }
        Ok(freed)
    }

    /// Outbox-only mode: deletes non-active segments last written more than `max_age` ago.
    pub fn apply_age_retention(&self, max_age: Duration) -> Result<u64, Error> {
        self.apply_retention(&Retention {
            min_age: max_age,
            require_readers: &[],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(bases: &[u64], old: usize) -> Vec<Seg> {
        let t0 = SystemTime::UNIX_EPOCH;
        bases
            .iter()
            .enumerate()
            .map(|(i, &base)| Seg {
                base,
                modified: if i < old {
                    t0
                } else {
                    t0 + Duration::from_secs(100)
                },
            })
            .collect()
    }

    #[test]
    fn plan_stops_at_reader_position_age_and_active_segment() {
        let cutoff = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let s = segs(&[0, 10, 20, 30], 4);
        assert_eq!(
            plan(&s, 30, Some(20), cutoff),
            2,
            "reader at 20 frees [0,10) and [10,20)"
        );
        assert_eq!(plan(&s, 30, Some(19), cutoff), 1);
        assert_eq!(plan(&s, 30, None, cutoff), 3, "never the active segment");
        assert_eq!(plan(&s, 20, None, cutoff), 2);
        let young = segs(&[0, 10, 20, 30], 1);
        assert_eq!(
            plan(&young, 30, None, cutoff),
            1,
            "stops at the first young segment"
        );
    }
}
