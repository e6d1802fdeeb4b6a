//! Replacing a small file so a reader sees the old or the new content, never a mix, and a
//! crash keeps one of them: a private temp file in the same directory, fsync, rename over the
//! target, fsync the directory. For the state files rewritten whole (evidence seals and public
//! key, the suppression list).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::RngCore;

/// Writes `bytes` to `dir/name` with `mode`.
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut nonce = [0; 8];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            // Set explicitly: the process umask must not narrow the public key's 0644.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        // The temp name is ours alone; removing it cannot touch the target.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn replaces_whole_files_with_their_mode_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        replace(tmp.path(), "a.seal", b"one", 0o600).unwrap();
        replace(tmp.path(), "a.seal", b"two", 0o600).unwrap();
        let path = tmp.path().join("a.seal");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
