//! Commands that write state (`run`, `cdr import`, `keys shred`) run as the data directory's
//! owner or not at all. Run as root (or another operator) they would leave files the daemon's
//! own user cannot read or replace: a root-owned key, checkpoint or outbox segment stops the
//! next start, or worse, a key the daemon cannot read is regenerated and splits pseudonyms.
//! Read-only commands need no such check; they create nothing.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "data directory {} belongs to uid {owner}, but this command runs as uid {uid}; run it \
         as the directory's owner (e.g. `sudo -u calltrackd calltrackd …`) so that the files \
         it writes stay the daemon's",
        path.display()
    )]
    NotOwner { path: PathBuf, owner: u32, uid: u32 },
    #[error("data directory {} cannot be inspected", path.display())]
    Stat { path: PathBuf, source: io::Error },
}

/// Refuses unless this process's effective user owns `data_dir`. A data directory that does
/// not exist yet is fine: the command creates it, owned by whoever runs it.
pub fn check(data_dir: &Path) -> Result<(), OwnerError> {
    check_uid(data_dir, rustix::process::geteuid().as_raw())
}

/// [`check`] for a given effective uid.
pub fn check_uid(data_dir: &Path, uid: u32) -> Result<(), OwnerError> {
    match std::fs::metadata(data_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OwnerError::Stat {
            path: data_dir.to_owned(),
            source,
        }),
        Ok(meta) if meta.uid() == uid => Ok(()),
        Ok(meta) => Err(OwnerError::NotOwner {
            path: data_dir.to_owned(),
            owner: meta.uid(),
            uid,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_passes_and_a_missing_dir_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let owner = std::fs::metadata(tmp.path()).unwrap().uid();
        assert!(check_uid(tmp.path(), owner).is_ok());
        assert!(check(tmp.path()).is_ok(), "the test created it, so owns it");
        let other = owner.wrapping_add(1);
        let err = check_uid(tmp.path(), other).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, OwnerError::NotOwner { .. }));
        assert!(text.contains(&format!("belongs to uid {owner}")), "{text}");
        assert!(text.contains(&format!("runs as uid {other}")), "{text}");
        assert!(check_uid(&tmp.path().join("not-yet"), other).is_ok());
    }
}
