//! Why the evidence writer or verifier could not do its work. Paths are our own files under the
//! data directory; no event content is ever part of an error. Each variant keeps its cause as
//! `source` and leaves it out of its message, so `{:#}` and `ops::Chain` print it once.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence directory {} cannot be used", path.display())]
    Dir { path: PathBuf, source: io::Error },
    #[error(
        "evidence directory {} is accessible by group or others; fix with `chmod 700 {}`",
        path.display(), path.display()
    )]
    DirPermissions { path: PathBuf },
    #[error("evidence file {} cannot be read or written", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "signing key {} is readable or writable by group or others; fix with `chmod 600 {}` \
         and treat the key as possibly disclosed",
        path.display(), path.display()
    )]
    KeyPermissions { path: PathBuf },
    #[error("signing key {} is not a regular file of 32 bytes", path.display())]
    KeyCorrupt { path: PathBuf },
    #[error("public key {} is not an Ed25519 public key in 64 hex characters", path.display())]
    PublicKey { path: PathBuf },
    #[error("outbox")]
    Outbox(#[from] crate::outbox::Error),
    #[error("the evidence writer's file work stopped unexpectedly")]
    Background,
}

impl EvidenceError {
    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| EvidenceError::Io { path, source }
    }
}
