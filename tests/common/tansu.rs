//! Test helpers around a real Kafka-compatible broker: tansu (pinned 0.6.0, built with the
//! `libsql` feature so topics and records live in one SQLite file that survives a restart),
//! and a plain consumer that reads a topic back from the beginning.
//!
//! The broker listens on a free loopback port only. Binary: `$TANSU_BIN`, else `tansu` on
//! `PATH`, else `~/.cargo/bin/tansu` (CI: `cargo install tansu --version 0.6.0 --features libsql
//! --locked`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::topic_partition_list::Offset;

/// How long a broker may take to accept connections after spawn.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped broker may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A tansu broker on `127.0.0.1:<port>` with its SQLite file in a temp dir. Killed on drop.
pub struct Tansu {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// Where the tansu binary is.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        Path::new(&home).join(".cargo/bin/tansu")
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

impl Tansu {
    /// Starts a fresh broker on a free loopback port and waits until it accepts connections.
    pub fn start() -> Tansu {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut t = Tansu {
            dir,
            port: free_port(),
            child: None,
        };
        t.spawn();
        t
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding `tansu.db` and `tansu.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("open tansu.log");
        let err = log.try_clone().expect("clone log handle");
        // The libsql engine resolves `sqlite://<path>` against the working directory (an
        // absolute path after `sqlite://` is joined to it too), hence current_dir + a bare name.
        let child = Command::new(binary())
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url"])
            .arg(self.url())
            .arg("--advertised-listener-url")
            .arg(self.url())
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!("tansu exited early ({status}); log: {}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not accept connections within {START_TIMEOUT:?}; log: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of the broker's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    /// Creates `topic` with `partitions` partitions (tansu 0.6.0 does not auto-create topics).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(binary())
            .args(["topic", "create", "--broker"])
            .arg(self.url())
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg(topic)
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the broker with SIGTERM (SIGKILL after a bound); the SQLite file stays.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the broker with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and the same SQLite file.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Prints librdkafka's log lines to stderr (only produced when `debug` is set).
pub struct Stderr;

impl rdkafka::ClientContext for Stderr {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!("rdkafka {fac}: {log_message}");
    }
}

impl rdkafka::consumer::ConsumerContext for Stderr {}

/// One consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
}

impl Msg {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// The topic the daemon tests deliver to.
pub const TOPIC: &str = "call-events";

/// A broker with `TOPIC` in three partitions.
pub fn broker() -> Tansu {
    let t = Tansu::start();
    t.create_topic(TOPIC, 3);
    t
}

impl Tansu {
    /// The daemon's `[kafka]` section for this broker and `TOPIC`, reconnecting within 500 ms.
    pub fn daemon_config(&self) -> String {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ntopic = \"{TOPIC}\"\n[kafka.properties]\n\"reconnect.backoff.max.ms\" = \"500\"\n",
            self.bootstrap()
        )
    }
}

/// Reads `topic` from the beginning of every partition (`assign`, no group join: tansu's group
/// protocol is slow) until `want` messages arrived or `timeout` passed; returns what it got,
/// in arrival order (which is offset order within each partition).
pub fn consume(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Msg> {
    consume_while(bootstrap, topic, timeout, |out| out.len() < want)
}

/// Like `consume`, but reads for as long as `more` (asked after each poll with everything so
/// far) says so, bounded by `timeout`.
pub fn consume_while(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    mut more: impl FnMut(&[Msg]) -> bool,
) -> Vec<Msg> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "calltrackd-test")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    // `KAFKA_TEST_DEBUG=fetch,msg` prints librdkafka's debug log to stderr.
    if let Ok(debug) = std::env::var("KAFKA_TEST_DEBUG") {
        config.set("debug", debug);
    }
    let consumer: BaseConsumer<Stderr> =
        config.create_with_context(Stderr).expect("create consumer");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
        let count = md
            .ok()
            .and_then(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| t.partitions().len())
            })
            .unwrap_or(0);
        if count > 0 {
            break count;
        }
        assert!(Instant::now() < deadline, "no metadata for topic {topic}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let p = i32::try_from(p).expect("partition count fits i32");
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut errors = 0u32;
    while more(&out) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Msg {
                key: m.key().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
                payload: m.payload().unwrap_or_default().to_vec(),
                partition: m.partition(),
                offset: m.offset(),
            }),
            Some(Err(e)) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("consumer error: {e}");
                }
            }
            None => {}
        }
    }
    out
}
