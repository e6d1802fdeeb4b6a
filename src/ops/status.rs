//! What `calltrackd status` shows of a running daemon: listeners, calls in flight, outbox depth
//! and lag, the Kafka forwarder, CDR feeds and the current pseudonym key. Counts and config names
//! only: no caller data can appear here (the same rule as metrics).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub uptime_seconds: u64,
    pub listeners: Vec<Listener>,
    pub calls: Calls,
    pub outbox: OutboxStatus,
    pub forwarder: ForwarderStatus,
    pub feeds: Vec<FeedStatus>,
    /// The pseudonym key epoch events are written under now.
    pub key_id: String,
    /// Why `GET /ready` fails now (fixed words); empty when ready.
    #[serde(default)]
    pub not_ready: Vec<String>,
    /// Every supervised task.
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub name: String,
    pub running: bool,
    /// Errors, panics and early exits since start; each was followed by a restart.
    pub failures: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// `udp`, `tcp`, `tls` or `http`.
    pub transport: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// INVITEs for tracking numbers whose flow has not ended (announcement, events, final).
    pub in_flight: usize,
    /// Of those, with an announcement playing.
    pub announcing: usize,
    pub transactions: usize,
    pub tcp_connections: i64,
    pub tls_connections: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// Position the next event gets (events ever written).
    pub end: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Writes fail until a restart (a failed fsync).
    pub poisoned: bool,
    /// A write hit ENOSPC; calls get 503 until the file system has room again.
    #[serde(default)]
    pub no_space: bool,
    /// Events not yet delivered to Kafka (0 without Kafka).
    pub depth: u64,
    /// Seconds since Kafka last acknowledged an event while some wait; 0 when none wait.
    pub lag_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwarderState {
    /// No `[kafka]` section: the outbox is the sink.
    Off,
    Running,
    /// Configured but not running (failed to start, or ended).
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwarderStatus {
    pub state: ForwarderState,
    pub acked: u64,
    pub delivery_errors: u64,
    pub resends: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStatus {
    pub name: String,
    pub format: String,
    pub spool_dir: String,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "calltrackd {}, up {}s",
            self.version, self.uptime_seconds
        )?;
        writeln!(f, "listeners:")?;
        for l in &self.listeners {
            writeln!(f, "  {:<5} {}", l.transport, l.address)?;
        }
        let c = &self.calls;
        writeln!(
            f,
            "calls:     {} in flight ({} announcing), {} transactions, {} tcp / {} tls connections",
            c.in_flight, c.announcing, c.transactions, c.tcp_connections, c.tls_connections
        )?;
        let o = &self.outbox;
        writeln!(
            f,
            "outbox:    {} events written, {} of {} bytes{}, depth {}, lag {}s",
            o.end,
            o.bytes,
            o.max_bytes,
            if o.poisoned {
                " (POISONED: restart)"
            } else if o.no_space {
                " (FILE SYSTEM FULL: calls get 503)"
            } else {
                ""
            },
            o.depth,
            o.lag_seconds
        )?;
        let k = &self.forwarder;
        let state = match k.state {
            ForwarderState::Off => "off (no [kafka])",
            ForwarderState::Running => "running",
            ForwarderState::Stopped => "STOPPED",
        };
        writeln!(
            f,
            "kafka:     {state}, {} acked, {} delivery errors, {} resends",
            k.acked, k.delivery_errors, k.resends
        )?;
        if self.feeds.is_empty() {
            writeln!(f, "cdr feeds: none")?;
        } else {
            writeln!(f, "cdr feeds:")?;
            for feed in &self.feeds {
                writeln!(f, "  {} ({}) {}", feed.name, feed.format, feed.spool_dir)?;
            }
        }
        writeln!(f, "key:       {}", self.key_id)?;
        if self.not_ready.is_empty() {
            writeln!(f, "ready:     yes")?;
        } else {
            writeln!(f, "ready:     NO: {}", self.not_ready.join("; "))?;
        }
        let troubled: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| !t.running || t.failures > 0)
            .map(|t| {
                let state = if t.running { "running" } else { "DOWN" };
                format!("{} ({state}, {} failures)", t.name, t.failures)
            })
            .collect();
        if troubled.is_empty() {
            writeln!(f, "tasks:     {} running", self.tasks.len())
        } else {
            writeln!(f, "tasks:     {}", troubled.join(", "))
        }
    }
}
