//! The layout of the data directory (`data_dir` in the configuration), in one place. Each
//! module still owns the files inside its own directory (outbox segments and `readers/`,
//! evidence days and seals, checkpoint records); this type only says where those directories
//! and the top-level state files are. Changing a path here moves data that existing
//! installations already have on disk.

use std::path::{Path, PathBuf};

/// The data directory. Touches nothing on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A configured state path (`privacy.key_dir`, `ops.control_socket`): relative ones live
    /// in the data directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.0.join(p)
        }
    }

    /// The pseudonym keys, `privacy.key_dir` (`keys/` by default).
    pub fn keys(&self, key_dir: &Path) -> PathBuf {
        self.resolve(key_dir)
    }

    /// The durable event log.
    pub fn outbox(&self) -> PathBuf {
        self.0.join("outbox")
    }

    /// The suppression list and its standing key.
    pub fn privacy(&self) -> PathBuf {
        self.0.join("privacy")
    }

    /// The signed, hash-chained disclosure evidence.
    pub fn evidence(&self) -> PathBuf {
        self.0.join("evidence")
    }

    /// Per-file CDR ingest records and the duplicate filter.
    pub fn cdr_checkpoints(&self) -> PathBuf {
        self.cdr().join("checkpoints")
    }

    /// CDR rows that could not be used.
    pub fn cdr_quarantine(&self) -> PathBuf {
        self.cdr().join("quarantine")
    }

    /// The private store of one feed's raw CDR files once ingested.
    pub fn cdr_raw(&self, feed: &str) -> PathBuf {
        self.cdr().join("raw").join(feed)
    }

    /// The SIP calls CDR rows can join (a file, not a directory).
    pub fn correlation_index(&self) -> PathBuf {
        self.cdr().join("correlation.jsonl")
    }

    fn cdr(&self) -> PathBuf {
        self.0.join("cdr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The on-disk layout of existing installations: a failure here means data would move.
    #[test]
    fn the_layout_is_pinned() {
        let d = DataDir::new("/var/lib/calltrackd");
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(d.path(), Path::new("/var/lib/calltrackd"));
        assert_eq!(d.outbox(), p("/var/lib/calltrackd/outbox"));
        assert_eq!(d.privacy(), p("/var/lib/calltrackd/privacy"));
        assert_eq!(d.evidence(), p("/var/lib/calltrackd/evidence"));
        assert_eq!(
            d.cdr_checkpoints(),
            p("/var/lib/calltrackd/cdr/checkpoints")
        );
        assert_eq!(d.cdr_quarantine(), p("/var/lib/calltrackd/cdr/quarantine"));
        assert_eq!(
            d.cdr_raw("carrier-a"),
            p("/var/lib/calltrackd/cdr/raw/carrier-a")
        );
        assert_eq!(
            d.correlation_index(),
            p("/var/lib/calltrackd/cdr/correlation.jsonl")
        );
        assert_eq!(d.keys(Path::new("keys")), p("/var/lib/calltrackd/keys"));
        assert_eq!(d.keys(Path::new("/srv/keys")), p("/srv/keys"));
        assert_eq!(
            d.resolve(Path::new("control.sock")),
            p("/var/lib/calltrackd/control.sock")
        );
    }
}
