//! The evidence signing key: a random Ed25519 seed in `signing.key` (0600), made on first start,
//! and its public half in `signing.pub` (hex, 0644) for auditors.
//!
//! As with the pseudonym keyring, permissions are enforced: a seed that group or others can read
//! is refused, because whoever holds it can seal a rewritten day. A new seed is published with
//! `link(2)`, which fails if the name exists, so two processes racing at first start end up with
//! the one key that won. A missing or stale `signing.pub` is rewritten from the seed.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::EvidenceError;
use super::layout::{Layout, read_optional};

const SEED_LEN: usize = 32;

/// The key id a seal names: the first 16 hex characters of SHA-256 of the 32-byte public key
/// (`xxd -r -p signing.pub | sha256sum | cut -c1-16`).
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Loads the signing key, making it (and `signing.pub`) on first use. The directory must exist
/// (`Layout::create`).
pub fn open_signing_key(layout: &Layout) -> Result<SigningKey, EvidenceError> {
    let path = layout.signing_key();
    let key = match read_seed(&path) {
        Ok(key) => key,
        Err(EvidenceError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            generate(layout)?
        }
        Err(err) => return Err(err),
    };
    let public = format!("{}\n", hex::encode(key.verifying_key().as_bytes()));
    let stored = read_optional(&layout.public_key())?;
    if stored.as_deref() != Some(public.as_bytes()) {
        if stored.is_some() {
            tracing::warn!("Evidence signing.pub did not match signing.key; rewritten.");
        }
        crate::atomic::replace(layout.dir(), Layout::PUBLIC_KEY, public.as_bytes(), 0o644)
            .map_err(EvidenceError::io(layout.public_key()))?;
    }
    Ok(key)
}

/// Reads a hex public key file (`signing.pub`, or the copy an auditor was given).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, EvidenceError> {
    let text = fs::read_to_string(path).map_err(EvidenceError::io(path))?;
    let mut bytes = [0; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .ok()
        .and_then(|()| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| EvidenceError::PublicKey {
            path: path.to_owned(),
        })
}

fn read_seed(path: &Path) -> Result<SigningKey, EvidenceError> {
    let mut file = File::open(path).map_err(EvidenceError::io(path))?;
    let meta = file.metadata().map_err(EvidenceError::io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(EvidenceError::KeyPermissions {
            path: path.to_owned(),
        });
    }
    let corrupt = || EvidenceError::KeyCorrupt {
        path: path.to_owned(),
    };
    if !meta.is_file() || meta.len() != SEED_LEN as u64 {
        return Err(corrupt());
    }
    let mut seed = [0; SEED_LEN];
    file.read_exact(&mut seed).map_err(|_| corrupt())?;
    let key = SigningKey::from_bytes(&seed);
    seed = [0; SEED_LEN];
    std::hint::black_box(&seed);
    Ok(key)
}

fn generate(layout: &Layout) -> Result<SigningKey, EvidenceError> {
    let path = layout.signing_key();
    let mut seed = [0; SEED_LEN];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let published = crate::atomic::publish_new(layout.dir(), Layout::SIGNING_KEY, &seed, 0o600);
    seed = [0; SEED_LEN];
    std::hint::black_box(&seed);
    match published {
        Ok(()) => tracing::info!("Evidence signing key generated."),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(EvidenceError::io(&path)(e)),
    }
    // Ours, or the one another process published first.
    read_seed(&path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn layout() -> (tempfile::TempDir, Layout) {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        layout.create().unwrap();
        (tmp, layout)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_start_makes_a_private_seed_and_a_public_hex_key() {
        let (_tmp, layout) = layout();
        let key = open_signing_key(&layout).unwrap();
        assert_eq!(fs::read(layout.signing_key()).unwrap().len(), 32);
        assert_eq!(mode(&layout.signing_key()), 0o600);
        assert_eq!(mode(&layout.public_key()), 0o644);
        let public = read_public_key(&layout.public_key()).unwrap();
        assert_eq!(public, key.verifying_key());
        assert_eq!(fingerprint(&public).len(), 16);
        // Second start: the same key.
        let again = open_signing_key(&layout).unwrap();
        assert_eq!(again.to_bytes(), key.to_bytes());
    }

    #[test]
    fn a_stale_public_key_is_rewritten_and_a_readable_seed_refused() {
        let (_tmp, layout) = layout();
        let key = open_signing_key(&layout).unwrap();
        fs::write(layout.public_key(), "00".repeat(32)).unwrap();
        open_signing_key(&layout).unwrap();
        assert_eq!(
            read_public_key(&layout.public_key()).unwrap(),
            key.verifying_key()
        );
        fs::set_permissions(layout.signing_key(), fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            open_signing_key(&layout),
            Err(EvidenceError::KeyPermissions { .. })
        ));
    }

    #[test]
    fn bad_key_files_are_named_not_used() {
        let (_tmp, layout) = layout();
        fs::write(layout.signing_key(), b"short").unwrap();
        fs::set_permissions(layout.signing_key(), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            open_signing_key(&layout),
            Err(EvidenceError::KeyCorrupt { .. })
        ));
        let public = layout.dir().join("given.pub");
        fs::write(&public, "not hex").unwrap();
        let err = read_public_key(&public).unwrap_err();
        assert!(err.to_string().contains("given.pub"), "{err}");
    }
}
