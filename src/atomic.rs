//! The one way a state file is written: a private temp file in the same directory, written,
//! fsynced, then renamed over the target (`replace`, `replace_with`) or linked to a name that
//! must not exist yet (`publish_new`), and the directory fsynced, so a reader sees the old or
//! the new content, never a mix, and a crash keeps one of them. The mode is set explicitly:
//! the process umask must not change it. For every state file rewritten whole (checkpoints,
//! the duplicate filter's compaction, reader positions, the correlation index, the suppression
//! list, evidence seals and public key) and the keys created once (pseudonym keys, the evidence
//! signing key).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Writes `bytes` to `dir/name` with `mode`, replacing any earlier content.
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace_with(dir, name, mode, |w| w.write_all(bytes))
}

/// [`replace`] for content streamed by `fill`; an error from `fill` leaves the target as it was.
pub(crate) fn replace_with<F>(dir: &Path, name: &str, mode: u32, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let tmp = temp_path(dir, name);
    let mut w = BufWriter::new(create(&tmp, mode)?);
    let written = fill(&mut w)
        .and_then(|()| w.into_inner().map_err(io::IntoInnerError::into_error))
        .and_then(|file| file.sync_all())
        .and_then(|()| fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        // The temp name is ours alone; removing it cannot touch the target.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Writes `bytes` to `dir/name` only if that name does not exist yet: two processes racing to
/// create the same key both end up using the one that won. Fails with `AlreadyExists` when
/// the name was taken (by the racer or earlier); the existing file is then the one to read.
/// Unbuffered, so a secret leaves no copy in a heap buffer.
pub(crate) fn publish_new(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_path(dir, name);
    let mut file = create(&tmp, mode)?;
    let published = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::hard_link(&tmp, dir.join(name)));
    drop(file);
    // Linked or not, the temp name is ours alone; removing it cannot lose the published file.
    let _ = fs::remove_file(&tmp);
    match published {
        Ok(()) => sync_dir(dir),
        // The file that won is the one the caller will use: make it durable even if its
        // writer died before its own directory fsync.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => sync_dir(dir).and(Err(e)),
        Err(e) => Err(e),
    }
}

/// Removes the temp files a crash mid-write left for `dir/name`; a missing `dir` has none. Only
/// for a caller that knows no other process is writing `name` now (it would lose its temp).
pub(crate) fn remove_leftovers(dir: &Path, name: &str) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let prefix = format!(".{name}.");
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let mut nonce = [0; 8];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)))
}

/// Creates the temp file with exactly `mode`. On error nothing of ours is left: a failed
/// `create_new` made nothing (and its name may be another writer's), a failed chmod is undone.
fn create(tmp: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have narrowed `mode` at creation (0644 to 0600, 0640 to 0600).
    if let Err(e) = file.set_permissions(fs::Permissions::from_mode(mode)) {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    Ok(file)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_whole_files_with_their_mode_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        replace(tmp.path(), "a.seal", b"one", 0o600).unwrap();
        replace(tmp.path(), "a.seal", b"two", 0o600).unwrap();
        let path = tmp.path().join("a.seal");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(tmp.path()), ["a.seal"]);
    }

    #[test]
    fn streamed_content_replaces_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        replace(tmp.path(), "index.jsonl", b"old\nlonger old\n", 0o600).unwrap();
        replace_with(tmp.path(), "index.jsonl", 0o600, |w| {
            for line in ["a", "b"] {
                writeln!(w, "{line}")?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read(tmp.path().join("index.jsonl")).unwrap(), b"a\nb\n");
        assert_eq!(names(tmp.path()), ["index.jsonl"]);
    }

    #[test]
    fn a_failing_writer_keeps_the_old_content_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        replace(tmp.path(), "x.pos", b"1\n", 0o640).unwrap();
        let err = replace_with(tmp.path(), "x.pos", 0o640, |w| {
            w.write_all(b"2")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(tmp.path().join("x.pos")).unwrap(), b"1\n");
        assert_eq!(names(tmp.path()), ["x.pos"]);
    }

    #[test]
    fn publish_new_never_overwrites_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        publish_new(tmp.path(), "2026-11.key", b"first", 0o600).unwrap();
        let err = publish_new(tmp.path(), "2026-11.key", b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let path = tmp.path().join("2026-11.key");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(tmp.path()), ["2026-11.key"]);
    }

    #[test]
    fn leftovers_of_one_name_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        replace(tmp.path(), "index.jsonl", b"x", 0o600).unwrap();
        for leftover in [
            ".index.jsonl.00ff.tmp",
            ".other.00ff.tmp",
            "index.jsonl.tmp",
        ] {
            fs::write(tmp.path().join(leftover), b"").unwrap();
        }
        remove_leftovers(tmp.path(), "index.jsonl").unwrap();
        assert_eq!(
            names(tmp.path()),
            [".other.00ff.tmp", "index.jsonl", "index.jsonl.tmp"]
        );
        remove_leftovers(&tmp.path().join("gone"), "index.jsonl").unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        assert!(replace(&gone, "a", b"x", 0o600).is_err());
        assert!(publish_new(&gone, "a", b"x", 0o600).is_err());
    }

    /// The umask is per process, so the restrictive one is set in a child running only this
    /// test: set in the test process it would race every other test that creates files.
    #[test]
    fn modes_are_exact_under_a_restrictive_umask() {
        const CHILD: &str = "CALLTRACKD_ATOMIC_UMASK_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "atomic::tests::modes_are_exact_under_a_restrictive_umask",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // A filter matching nothing would also succeed.
            assert!(stdout.contains("1 passed"), "{stdout}");
            return;
        }
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let tmp = tempfile::tempdir().unwrap();
        replace(tmp.path(), "signing.pub", b"k\n", 0o644).unwrap();
        replace_with(tmp.path(), "x.pos", 0o640, |w| w.write_all(b"1\n")).unwrap();
        publish_new(tmp.path(), "shared", b"x", 0o644).unwrap();
        assert_eq!(mode(&tmp.path().join("signing.pub")), 0o644);
        assert_eq!(mode(&tmp.path().join("x.pos")), 0o640);
        assert_eq!(mode(&tmp.path().join("shared")), 0o644);
    }
}
