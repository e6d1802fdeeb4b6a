//! Disclosure evidence through the real binary: a call that hears the announcement leaves a
//! sealed evidence line naming the WAV file that played, `calltrackd evidence verify` accepts
//! the day, and one changed byte makes it fail with the chain verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::uac::Uac;
use common::*;

fn calltrackd(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args(["evidence"])
        .args(args)
        .arg("--config")
        .arg(daemon.dir.path().join("calltrackd.toml"))
        .output()
        .expect("run calltrackd evidence")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The one day file and its seal once the seal covers `lines` lines (bounded wait).
fn wait_sealed(evidence: &Path, lines: u64) -> (PathBuf, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seal = std::fs::read_dir(evidence)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "seal"));
        if let Some(seal) = seal {
            let value: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&seal).unwrap()).unwrap();
            if value["count"] == lines {
                return (seal.with_extension("jsonl"), value);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no seal over {lines} lines in 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_announced_call_leaves_a_verifiable_evidence_line_and_a_changed_byte_is_caught() {
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    uac.invite("0 101");
    uac.expect(183, "INVITE");
    uac.expect(302, "INVITE");
    uac.ack();

    let evidence = daemon.data_dir().join("evidence");
    let (day_file, seal) = wait_sealed(&evidence, 1);
    let day = day_file.file_stem().unwrap().to_str().unwrap().to_owned();
    assert_eq!(seal["day"], day.as_str());
    let text = std::fs::read_to_string(&day_file).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    let wav = std::fs::read(daemon.dir.path().join("announcement.wav")).unwrap();
    assert_eq!(line["recording_sha256"], sha256_hex(&wav));
    assert_eq!(line["outcome"], "complete");
    assert_eq!(line["announcement_id"], "notice");
    assert_eq!(line["announcement_version"], "test-1");
    assert!(line["occurred_at"].as_str().unwrap().starts_with(&day));
    let disclosed = daemon.wait_events(3);
    let disclosed = events_of_type(&disclosed, "call.disclosed");
    assert_eq!(line["event_id"], disclosed[0]["event_id"]);
    // serde_json's map sorts keys; the line's own order is pinned by the unit tests.
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "announcement_id",
            "announcement_version",
            "chain",
            "event_id",
            "occurred_at",
            "outcome",
            "played_seconds",
            "recording_sha256",
        ],
        "no caller or call identifier"
    );
    assert_eq!(mode(&evidence), 0o700);
    assert_eq!(mode(&day_file), 0o600);
    assert_eq!(mode(&day_file.with_extension("seal")), 0o600);
    assert_eq!(mode(&evidence.join("signing.key")), 0o600);
    assert_eq!(mode(&evidence.join("signing.pub")), 0o644);

    let ok = calltrackd(&daemon, &["verify", &day]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("{day}: OK: 1 lines, chain intact, seal signature valid")
    );

    // The auditor's own copy of the public key works the same; another key does not.
    let public = calltrackd(&daemon, &["public-key"]);
    assert!(public.status.success());
    let hex = String::from_utf8(public.stdout).unwrap();
    assert_eq!(hex.trim().len(), 64);
    let copy = daemon.dir.path().join("auditor.pub");
    std::fs::write(&copy, &hex).unwrap();
    let with_copy = calltrackd(
        &daemon,
        &["verify", &day, "--public-key", copy.to_str().unwrap()],
    );
    assert!(with_copy.status.success());
    let other = daemon.dir.path().join("other.pub");
    // The Ed25519 base point: a valid public key that is not ours.
    std::fs::write(
        &other,
        "5866666666666666666666666666666666666666666666666666666666666666",
    )
    .unwrap();
    let wrong = calltrackd(
        &daemon,
        &["verify", &day, "--public-key", other.to_str().unwrap()],
    );
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stdout).contains("signature invalid"),
        "{}",
        String::from_utf8_lossy(&wrong.stdout)
    );

    // One byte of the day file changed: 0.4 seconds played becomes 0.5.
    let tampered = text.replacen("\"played_seconds\":0.4", "\"played_seconds\":0.5", 1);
    assert_ne!(tampered, text, "the test must change a byte");
    std::fs::write(&day_file, tampered).unwrap();
    let broken = calltrackd(&daemon, &["verify", &day]);
    assert_eq!(broken.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&broken.stdout).trim(),
        format!("{day}: FAILED: line 1 breaks the chain")
    );

    let bad_day = calltrackd(&daemon, &["verify", "24.11.2026"]);
    assert!(!bad_day.status.success());
    assert!(String::from_utf8_lossy(&bad_day.stderr).contains("YYYY-MM-DD"));
}
