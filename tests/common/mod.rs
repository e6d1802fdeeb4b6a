//! Test harness: the built daemon as a child process on a loopback port, sipp as the carrier, and
//! readers for the outbox and the captured log. Everything is bounded in time.
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A tracking number in the test pool and the campaign it belongs to.
pub const POOL_NUMBER: &str = "+493055501000";
pub const POOL_CAMPAIGN: &str = "spring-sale";
/// The same pool number in national form, as some carriers send it.
pub const POOL_NUMBER_NATIONAL: &str = "03055501000";
/// A number outside the pool.
pub const UNKNOWN_NUMBER: &str = "+493055509999";
/// The distinctive caller the sipp scenarios use.
pub const CALLER_DIGITS: &str = "17612345678";
pub const CALLER_NAME: &str = "Mustermann";
pub const CALLER_AGENT: &str = "SecretPhone";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A pool number whose campaign plays no announcement (so keeps no caller identifier).
pub const QUIET_NUMBER: &str = "+493055501002";
/// Length of the test announcement.
pub const ANNOUNCEMENT_MS: u64 = 400;
/// A pool number whose campaign plays a longer announcement, for mid-announcement tests.
pub const LONG_NUMBER: &str = "+493055501003";
pub const LONG_ANNOUNCEMENT_MS: u64 = 2000;

/// Writes an 8 kHz mono 16-bit WAV tone of `ms` milliseconds.
pub fn write_tone(path: &Path, ms: u64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for i in 0..(ms * 8) {
        let t = i as f64 / 8000.0;
        w.write_sample(((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16)
            .expect("sample");
    }
    w.finalize().expect("wav finalize");
}

/// A media port range of this test's own, so parallel daemons do not compete for ports.
fn media_ports(data_dir: &Path) -> (u16, u16) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    // 250 even ports each: enough for the 200-call test.
    let base = 20000 + (h.finish() % 80) as u16 * 500;
    (base, base + 498)
}

pub fn base_config(data_dir: &Path) -> String {
    std::fs::create_dir_all(data_dir.parent().expect("parent")).expect("dir");
    let tone = data_dir.parent().expect("parent").join("announcement.wav");
    write_tone(&tone, ANNOUNCEMENT_MS);
    let long = data_dir.parent().expect("parent").join("long.wav");
    write_tone(&long, LONG_ANNOUNCEMENT_MS);
    let (port_min, port_max) = media_ports(data_dir);
    format!(
        r#"
data_dir = "{data}"

[sip]
listen = ["127.0.0.1:0"]

[sip.acl]
allow = ["127.0.0.0/8", "::1/128"]

[media]
port_min = {port_min}
port_max = {port_max}

[announcements.notice]
version = "test-1"
file = "{tone}"

[announcements.long]
version = "long-1"
file = "{long}"

[numbers]
default_region = "DE"

[[numbers.pool]]
number = "{POOL_NUMBER}"
campaign = "{POOL_CAMPAIGN}"

[[numbers.pool]]
number = "{QUIET_NUMBER}"
campaign = "quiet"

[[numbers.pool]]
number = "{LONG_NUMBER}"
campaign = "long-notice"

[campaigns.{POOL_CAMPAIGN}]
destination = "sip:+493055509000@pbx.example.net;user=phone"
announcement = "notice"

[campaigns.quiet]
destination = "tel:+493055509001"
caller = "drop"

[campaigns.long-notice]
destination = "tel:+493055509002"
announcement = "long"

[log]
level = "debug"

# The CDR fixtures are from 2024: the time window must reach back to them.
[cdr.limits]
max_past_days = 36500
"#,
        data = data_dir.display(),
        tone = tone.display(),
        long = long.display(),
    )
}

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    log_path: PathBuf,
}

impl Daemon {
    /// Starts the daemon with the base config plus `extra` TOML appended.
    pub fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!("{}\n{extra}", base_config(&dir.path().join("var")));
        Self::start_with(dir, &config)
    }

    pub fn start_with(dir: tempfile::TempDir, config: &str) -> Self {
        Self::start_command(dir, config, Command::new(env!("CARGO_BIN_EXE_calltrackd")))
    }

    /// Like `start_with`, as systemd starts a `Type=notify` unit: `NOTIFY_SOCKET`, and with
    /// `watchdog_usec` also `WATCHDOG_USEC` and `WATCHDOG_PID` (the daemon's own pid: a shell
    /// sets it, then execs the daemon).
    pub fn start_notifying(
        dir: tempfile::TempDir,
        config: &str,
        notify_socket: &Path,
        watchdog_usec: Option<u64>,
    ) -> Self {
        let mut command = Command::new("sh");
        command
            .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_calltrackd"))
            .env("NOTIFY_SOCKET", notify_socket);
        match watchdog_usec {
            Some(usec) => command.env("WATCHDOG_USEC", usec.to_string()),
            None => command.env_remove("WATCHDOG_USEC"),
        };
        Self::start_command(dir, config, command)
    }

    fn start_command(dir: tempfile::TempDir, config: &str, mut command: Command) -> Self {
        let config_path = dir.path().join("calltrackd.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = command
            .args(["run", "--config"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn calltrackd");
        let mut daemon = Self {
            child: Some(child),
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            log_path,
        };
        daemon.addr = daemon.wait_listening();
        daemon
    }

    fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains("Listening.")) {
                let udp = line
                    .split("udp=")
                    .nth(1)
                    .and_then(|s| s.split([' ', ',']).next());
                if let Some(addr) = udp.and_then(|s| s.trim_matches('"').parse().ok()) {
                    return addr;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("daemon exited with {status} before listening:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "daemon did not start listening within 20 s:\n{}",
            self.log()
        );
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A field of the "Listening." log line (`tcp`, `tls`, `metrics`, `control`).
    pub fn listening(&self, field: &str) -> Option<String> {
        listening_field(&self.log(), field)
    }

    /// The first TLS listener (needs `[sip.tls]`).
    pub fn tls_addr(&self) -> SocketAddr {
        self.listening("tls")
            .and_then(|a| a.parse().ok())
            .expect("a TLS listener")
    }

    /// `calltrackd status` (with `--json` when asked) against this daemon.
    pub fn status(&self, json: bool) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_calltrackd"));
        cmd.args(["status", "--config"])
            .arg(self.dir.path().join("calltrackd.toml"));
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run calltrackd status")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("var")
    }

    /// Runs `calltrackd ARGS --config <this daemon's config>` with `stdin` as standard input.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_calltrackd"))
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("calltrackd.toml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run calltrackd");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("calltrackd output")
    }

    /// GET a path from the daemon's metrics endpoint (needs `[ops] metrics_listen`).
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read as _, Write as _};
        let addr = self
            .listening("metrics")
            .expect("metrics endpoint configured");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect metrics");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(stream, "GET {path} HTTP/1.0\r\n\r\n").expect("request");
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        body
    }

    /// Everything the daemon logged so far (debug level).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Every event in the outbox, in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        read_events(&self.data_dir().join("outbox"))
    }

    /// Waits until `n` events are in the outbox (bounded).
    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let events = self.events();
            if events.len() >= n || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait (bounded); returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits (bounded) for the daemon to exit by itself; its exit code, `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a signal (e.g. "HUP") to the daemon.
    pub fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(child.id().to_string())
                .status();
        }
    }

    /// SIGKILL, then start again on the same data directory and config: the crash case.
    pub fn crash_and_restart(mut self) -> Daemon {
        self.kill();
        self.restart()
    }

    /// Starts a stopped or killed daemon again on the same data directory and config.
    pub fn restart(mut self) -> Daemon {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        drop(self);
        let config = std::fs::read_to_string(dir.path().join("calltrackd.toml")).expect("config");
        Daemon::start_with(dir, &config)
    }

    /// SIGKILL: the crash case.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first value of a field of the "Listening." line in a daemon's log; `None` when absent or
/// "off".
pub fn listening_field(log: &str, field: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("Listening."))?;
    let value = line.split(&format!(" {field}=")).nth(1)?;
    let value = value.split_whitespace().next()?.trim_matches('"');
    let first = value.split(',').next()?;
    (!first.is_empty() && first != "off").then(|| first.to_owned())
}

/// Lowercase hex SHA-256, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The events of one type.
pub fn events_of_type<'a>(
    events: &'a [serde_json::Value],
    kind: &str,
) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event_type"] == kind).collect()
}

pub fn read_events(outbox: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    let mut events = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        // A line still being written (no newline yet) is not an event yet.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in complete.lines().filter(|l| !l.is_empty()) {
            events.push(serde_json::from_str(line).expect("outbox line is JSON"));
        }
    }
    events
}

/// Runs a sipp scenario from fixtures/sipp against the daemon; bounded by sipp's own timeout.
pub fn sipp(
    scenario: &str,
    transport: &str,
    target: SocketAddr,
    service: &str,
    extra: &[&str],
) -> Output {
    let scenario = repo().join("fixtures/sipp").join(scenario);
    let mut cmd = Command::new("sipp");
    cmd.arg(target.to_string())
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", service, "-t", transport, "-i", "127.0.0.1", "-p", "0"])
        .args([
            "-m",
            "1",
            "-timeout",
            "20",
            "-timeout_error",
            "-nostdin",
            "-max_recv_loops",
            "1000",
        ])
        .args(extra)
        .stdin(Stdio::null());
    cmd.output()
        .expect("sipp must be installed (Debian package sip-tester)")
}

/// A sipcarrier-csv file of `rows` answered calls to +493055511000, each from its own caller
/// (`caller_prefix` and eight digits of the row number; `rows` stays below 10^8).
pub fn write_bulk(path: &Path, rows: usize, caller_prefix: &str) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group").unwrap();
    for i in 0..rows {
        writeln!(
            f,
            "B{i:07},,2026-11-24T06:00:00Z,2026-11-24T06:00:03Z,2026-11-24T06:02:03Z,120000,{caller_prefix}{i:08},+493055511000,200,tg"
        )
        .unwrap();
    }
}

/// sipp places `calls` calls to `number` over UDP at `rate` per second; all must get their 302.
pub fn place_calls(daemon: &Daemon, number: &str, calls: u32, rate: u32, what: &str) {
    let (calls, rate) = (calls.to_string(), rate.to_string());
    let out = sipp(
        "uac_redirect.xml",
        "u1",
        daemon.addr,
        number,
        &["-m", &calls, "-r", &rate, "-l", &calls],
    );
    assert_sipp_ok(&out, what);
}

pub fn assert_sipp_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: sipp failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends one UDP datagram and returns the first response's status code, if any arrives in time.
pub fn udp_exchange(target: SocketAddr, message: &[u8], wait: Duration) -> Option<(u16, String)> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(wait)).expect("timeout");
    socket.send_to(message, target).expect("send");
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            return None;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
        if status >= 200 {
            return Some((status, text));
        }
    }
}

/// Like `sipp`, but the carrier sends from the given loopback address.
pub fn sipp_from(
    local_ip: &str,
    scenario: &str,
    transport: &str,
    target: SocketAddr,
    service: &str,
) -> Output {
    let scenario = repo().join("fixtures/sipp").join(scenario);
    Command::new("sipp")
        .arg(target.to_string())
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", service, "-t", transport, "-i", local_ip, "-p", "0"])
        .args(["-m", "1", "-timeout", "20", "-timeout_error", "-nostdin"])
        .stdin(Stdio::null())
        .output()
        .expect("sipp must be installed (Debian package sip-tester)")
}
pub mod registry;
pub mod tansu;
pub mod tls;
pub mod uac;
