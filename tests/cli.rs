//! The command line as an operator meets it: help, version, check-config, keys, events tail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

fn calltrackd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_and_version_follow_clap_conventions() {
    let help = calltrackd(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["run", "check-config", "events", "keys"] {
        assert!(text.contains(command), "help lists {command}");
    }
    let version = calltrackd(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("calltrackd {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(!calltrackd(&["no-such-command"]).status.success());
}

#[test]
fn shipped_example_config_is_valid() {
    let out = calltrackd(&[
        "check-config",
        repo().join("config/calltrackd.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_names_key_and_line_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let mut text = base_config(&dir.path().join("var"));
    text.push_str("\n[outbox]\nsegmnet_bytes = 1\n");
    std::fs::write(&path, &text).unwrap();
    let out = calltrackd(&["check-config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .position(|l| l.starts_with("segmnet_bytes"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("line {line}")), "{err}");
    assert!(err.contains("segmnet_bytes"), "{err}");

    let text = base_config(&dir.path().join("var"))
        .replace("campaign = \"spring-sale\"", "campaign = \"nope\"");
    std::fs::write(&path, &text).unwrap();
    let out = calltrackd(&["check-config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .position(|l| l.contains("campaign = \"nope\""))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("line {line}: numbers.pool[0].campaign")),
        "{err}"
    );
}

#[test]
fn events_tail_prints_what_the_daemon_recorded_and_keys_can_be_listed() {
    let daemon = Daemon::start("");
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "a call");
    daemon.wait_events(3);
    let config = daemon.dir.path().join("calltrackd.toml");
    let out = calltrackd(&["events", "tail", "--config", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event_type"], "call.offered");
    let keys = calltrackd(&["keys", "list", "--config", config.to_str().unwrap()]);
    let key_id = lines[0]["key_id"].as_str().unwrap();
    assert!(String::from_utf8_lossy(&keys.stdout).contains(key_id));
}

#[test]
fn subject_find_returns_the_events_of_one_caller_only() {
    use std::io::Write;
    let mut daemon = Daemon::start("");
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "a call from the sipp caller");
    daemon.wait_events(3);
    daemon.stop();
    let config = daemon.dir.path().join("calltrackd.toml");
    let find = |number: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_calltrackd"))
            .args(["subject", "find", "--config", config.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{number}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let caller = find("+4917612345678");
    assert!(
        caller.status.success(),
        "{}",
        String::from_utf8_lossy(&caller.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&caller.stdout).lines().count(),
        3,
        "all three events of the call"
    );
    let stranger = find("+4917600000000");
    assert_eq!(String::from_utf8_lossy(&stranger.stdout).lines().count(), 0);
}

#[test]
fn a_bad_announcement_file_is_a_config_error_naming_the_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_config(&dir.path().join("var"));
    let bad = dir.path().join("announcement.wav");
    std::fs::write(&bad, b"this is not a RIFF file").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &text).unwrap();
    let out = calltrackd(&["check-config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("announcements.notice.file"), "{err}");
    assert!(err.contains("announcement.wav"), "names the file: {err}");
}

#[test]
fn an_informing_point_beyond_the_recording_or_a_notice_free_pseudonymizing_campaign_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let out = calltrackd(&["check-config", path.to_str().unwrap()]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let base = base_config(&dir.path().join("var"));
    // The long announcement is 2 s: 1.5 s is inside it, 2.5 s is not.
    let inside = base.replace(
        "version = \"long-1\"",
        "version = \"long-1\"\ninformed_after_seconds = 1.5",
    );
    assert!(check(&inside).0, "{}", check(&inside).1);
    let beyond = base.replace(
        "version = \"long-1\"",
        "version = \"long-1\"\ninformed_after_seconds = 2.5",
    );
    let (ok, err) = check(&beyond);
    assert!(!ok);
    assert!(
        err.contains("announcements.long.informed_after_seconds"),
        "{err}"
    );
    assert!(err.contains("later than the end"), "{err}");
    // The manifest allows a caller pseudonym only with a disclosure.
    let no_notice = base.replace("caller = \"drop\"", "caller = \"pseudonymize\"");
    let (ok, err) = check(&no_notice);
    assert!(!ok);
    assert!(err.contains("campaigns.quiet.caller"), "{err}");
    assert!(err.contains("privacy manifest"), "{err}");
}

#[test]
fn sighup_reloads_the_number_pool_and_refuses_a_broken_config() {
    let daemon = Daemon::start("");
    let new_number = "+493055501009";
    let before = sipp("uac_not_found.xml", "u1", daemon.addr, new_number, &[]);
    assert_sipp_ok(&before, "not in the pool yet: 404");

    let path = daemon.dir.path().join("calltrackd.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let added =
        format!("{original}\n[[numbers.pool]]\nnumber = \"{new_number}\"\ncampaign = \"quiet\"\n");
    std::fs::write(&path, &added).unwrap();
    daemon.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !daemon.log().contains("Config reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let after = sipp("uac_redirect.xml", "u1", daemon.addr, new_number, &[]);
    assert_sipp_ok(&after, "in the pool after SIGHUP: 302");

    std::fs::write(&path, format!("{added}\n[outbox]\nsegmnet_bytes = 1\n")).unwrap();
    daemon.signal("HUP");
    while !daemon.log().contains("Config reload refused") {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        daemon.log().contains("segmnet_bytes"),
        "the refusal names the key"
    );
    let still = sipp("uac_redirect.xml", "u1", daemon.addr, new_number, &[]);
    assert_sipp_ok(&still, "the running config stays");
}

/// Runs `calltrackd ARGS` with `stdin` on standard input.
fn calltrackd_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Every path under `dir` with its size, sorted.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}

#[test]
fn read_only_commands_leave_a_fresh_data_dir_as_they_found_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("var");
    let config = tmp.path().join("calltrackd.toml");
    std::fs::write(&config, base_config(&data)).unwrap();
    let c = config.to_str().unwrap();
    let read_only = |stage: &str| {
        for (args, stdin) in [
            (vec!["keys", "list", "--config", c], ""),
            (vec!["subject", "find", "--config", c], "+4917612345678\n"),
            (vec!["events", "tail", "--config", c], ""),
        ] {
            let out = calltrackd_with_stdin(&args, stdin);
            assert!(
                out.status.success(),
                "{stage} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if stage != "used" {
                assert!(out.stdout.is_empty(), "{stage} {args:?}: nothing to show");
            }
        }
    };
    // No data directory at all: none appears.
    read_only("missing");
    assert!(
        !data.exists(),
        "a read-only command created the data directory"
    );
    // An empty one: stays empty.
    std::fs::create_dir(&data).unwrap();
    read_only("empty");
    assert_eq!(tree(&data), []);
    // One with keys and an outbox of a daemon that ran: nothing added or changed.
    let mut daemon = Daemon::start_with(tmp, &std::fs::read_to_string(&config).unwrap());
    daemon.stop();
    let before = tree(&data);
    assert!(
        before.iter().any(|(p, _)| p.ends_with("keys")),
        "{before:?}"
    );
    read_only("used");
    assert_eq!(tree(&data), before);
}

#[test]
fn writing_commands_refuse_a_data_dir_of_another_user() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("var");
    let config = tmp.path().join("calltrackd.toml");
    std::fs::write(&config, base_config(&data)).unwrap();
    let c = config.to_str().unwrap();
    let cdr = tmp.path().join("x.csv");
    std::fs::write(&cdr, "").unwrap();
    let writers: [Vec<&str>; 3] = [
        vec!["keys", "shred", "--config", c, "2020-01"],
        vec![
            "cdr",
            "import",
            "--config",
            c,
            "--format",
            "sipcarrier-csv",
            cdr.to_str().unwrap(),
        ],
        vec!["run", "--config", c],
    ];
    // As the owner, the check passes: shredding a key that does not exist is the error.
    std::fs::create_dir(&data).unwrap();
    let own = calltrackd(&writers[0]);
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("no key file exists"),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    if !rustix::process::geteuid().is_root() {
        // Giving the directory away needs root (CI runs as root); `ops::owner`'s unit test
        // covers the check itself.
        return;
    }
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let before = tree(&data);
    for args in &writers {
        let out = calltrackd(args);
        assert!(!out.status.success(), "{args:?} ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("belongs to uid 65534") && err.contains("runs as uid 0"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(tree(&data), before, "nothing written");
    assert!(cdr.exists(), "the CDR file was not taken");
}
