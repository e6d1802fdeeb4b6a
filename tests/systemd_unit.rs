//! The shipped systemd unit, checked without a running systemd: its `systemd-analyze security`
//! rating stays at 2.0 or better, and every system call the daemon makes while serving (SIP over
//! UDP and TLS with an announcement, a CDR feed, metrics, the control socket, SIGHUP, SIGTERM)
//! is allowed by the unit's `SystemCallFilter=`, so the hardening cannot break the service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tls::{Pki, TlsClient, Versions, client_config};
use common::*;

/// strace and the daemon it runs; both go when the test ends, passed or failed.
struct Traced(std::process::Child, std::path::PathBuf);

impl Traced {
    /// The daemon's pid: the first pid strace writes.
    fn daemon_pid(&self) -> Option<String> {
        std::fs::read_to_string(&self.1)
            .ok()?
            .lines()
            .next()?
            .split_whitespace()
            .next()
            .map(str::to_owned)
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            // Usually gone already; the kill is for a test that failed half-way.
            let _ = Command::new("kill")
                .args(["-KILL", &pid])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unit() -> std::path::PathBuf {
    repo().join("systemd/calltrackd.service")
}

#[test]
fn the_unit_rates_2_0_or_better() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(unit())
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    let level = text
        .lines()
        .find_map(|l| l.split("calltrackd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("an overall exposure level");
    eprintln!("systemd-analyze security: {level}");
    assert!(level <= 2.0, "exposure {level}:\n{text}");
    assert!(out.status.success(), "over the 2.0 threshold:\n{text}");
}

/// The filter's argument list, groups expanded by `systemd-analyze syscall-filter`.
fn expand(set: &str) -> BTreeSet<String> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", set])
        .output()
        .expect("systemd-analyze syscall-filter");
    let mut names = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.starts_with('@') {
            names.extend(expand(item));
        } else {
            names.insert(item.to_owned());
        }
    }
    names
}

/// What the unit allows: each `SystemCallFilter=` line in order (allow-list, then `~` removals).
fn allowed_by_unit() -> BTreeSet<String> {
    let text = std::fs::read_to_string(unit()).unwrap();
    let mut allowed: Option<BTreeSet<String>> = None;
    for line in text.lines() {
        let Some(value) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        let (deny, list) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let names: BTreeSet<String> = list.split_whitespace().flat_map(expand).collect();
        let current = allowed.get_or_insert_with(BTreeSet::new);
        if deny {
            current.retain(|n| !names.contains(n));
        } else {
            current.extend(names);
        }
    }
    allowed.expect("the unit has a SystemCallFilter")
}

#[test]
fn every_syscall_of_a_serving_daemon_is_allowed_by_the_unit() {
    let allowed = allowed_by_unit();
    assert!(allowed.contains("sendmsg") && !allowed.contains("setuid"));

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let config = format!(
        "{}\n{}\n[ops]\nmetrics_listen = \"127.0.0.1:0\"\n\n[[cdr.feeds]]\nname = \"carrier\"\nspool_dir = \"{}\"\nglob = \"*.csv\"\nformat = \"sipcarrier-csv\"\nquiet_seconds = 1\nrescan_seconds = 1\n",
        base_config(&dir.path().join("var")),
        pki.config(""),
        spool.display()
    );
    let config_path = dir.path().join("calltrackd.toml");
    std::fs::write(&config_path, &config).unwrap();
    let trace = dir.path().join("strace.txt");
    let log_path = dir.path().join("daemon.log");
    let mut traced = Traced(
        Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&trace)
            .arg(env!("CARGO_BIN_EXE_calltrackd"))
            .args(["run", "--config"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("strace (Debian package strace)"),
        trace.clone(),
    );
    let child = &mut traced.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    while !log().contains("Listening.") {
        assert!(
            Instant::now() < deadline,
            "daemon did not start:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let field = |name: &str| listening_field(&log(), name).unwrap();
    let udp: std::net::SocketAddr = field("udp").parse().unwrap();
    let tls: std::net::SocketAddr = field("tls").parse().unwrap();

    let out = sipp("uac_redirect.xml", "u1", udp, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "a call under strace");
    let mut client =
        TlsClient::connect(tls, "sip.test", client_config(&pki, Versions::Any, false)).unwrap();
    let port = client.local_port();
    client.send(&format!(
        "OPTIONS sips:sip.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKst\r\nFrom: <sips:p@carrier.test>;tag=1\r\nTo: <sips:sip.test>\r\nCall-ID: strace@x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ));
    client.expect(200);
    let sample = repo().join("fixtures/cdr/sipcarrier-sample.csv");
    std::fs::copy(&sample, dir.path().join("cdr.tmp")).unwrap();
    std::fs::rename(dir.path().join("cdr.tmp"), spool.join("cdr.csv")).unwrap();
    while !log().contains("CDR file ingested.") {
        assert!(Instant::now() < deadline, "CDR not ingested:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = field("metrics");
    let mut http = std::net::TcpStream::connect(metrics).unwrap();
    std::io::Write::write_all(&mut http, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(&mut http, &mut body);
    assert!(body.contains("calltrackd_calls_redirected_total 1"));
    let status = Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args(["status", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let pid = child.id().to_string();
    // strace's child is the daemon: it gets the signals, not strace.
    let daemon_pid = traced.daemon_pid().unwrap();
    assert_ne!(daemon_pid, pid);
    Command::new("kill")
        .args(["-HUP", &daemon_pid])
        .status()
        .unwrap();
    while !log().contains("Config reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-TERM", &daemon_pid])
        .status()
        .unwrap();
    let exit = traced.0.wait().unwrap();
    assert!(
        exit.success(),
        "daemon exit under strace: {exit:?}\n{}",
        log()
    );

    let text = std::fs::read_to_string(&trace).unwrap();
    let used: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1.trim_start();
            let rest = rest.strip_prefix("<... ").unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && rest[name.len()..].starts_with(['(', ' '])).then_some(name)
        })
        .collect();
    // The exec of the binary itself happens before the filter applies (systemd installs it
    // for the exec), so execve is allowed by construction.
    let denied: Vec<_> = used
        .iter()
        .filter(|n| !allowed.contains(*n) && *n != "execve")
        .collect();
    eprintln!("{} distinct syscalls used", used.len());
    assert!(
        denied.is_empty(),
        "syscalls the unit's filter would refuse (EPERM): {denied:?}"
    );
}
