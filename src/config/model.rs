//! The typed configuration tree. Defaults are the safe ones: loopback listeners, a closed ACL and a
//! bounded outbox, so a config that only names a number pool is already fit to run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

// Sections that live next to the component they configure, under their names in this tree.
pub use crate::media::Settings as Media;
pub use crate::outbox::Settings as Outbox;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the outbox, keys and other state live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub sip: Sip,
    pub numbers: Numbers,
    #[serde(default)]
    pub campaigns: BTreeMap<String, Campaign>,
    /// Early media (RFC 3960): where our RTP comes from.
    #[serde(default)]
    pub media: Media,
    /// Disclosure announcements by id, referenced from campaigns.
    #[serde(default)]
    pub announcements: BTreeMap<String, Announcement>,
    #[serde(default)]
    pub cdr: Cdr,
    /// Kafka delivery; without this section the outbox alone is the sink.
    #[serde(default)]
    pub kafka: Option<crate::sink::Kafka>,
    #[serde(default)]
    pub privacy: Privacy,
    #[serde(default)]
    pub outbox: Outbox,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub ops: Ops,
}

/// Operator endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// Serve `GET /metrics` (Prometheus) and `GET /health` here; unset serves nothing. Keep it
    /// on loopback or a management network.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The local control socket `calltrackd status` talks to (0600, owner only); relative paths
    /// are under `data_dir`.
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// `GET /ready` fails once events have waited this long without a Kafka acknowledgement.
    #[serde(default = "default_ready_max_lag_seconds")]
    pub ready_max_lag_seconds: u64,
}

impl Default for Ops {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            control_socket: default_control_socket(),
            ready_max_lag_seconds: default_ready_max_lag_seconds(),
        }
    }
}

/// Two minutes: longer than a broker leader election or a rolling restart takes, short enough
/// that a load balancer or an alert notices a delivery that has really stopped.
fn default_ready_max_lag_seconds() -> u64 {
    120
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("control.sock")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./var")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    /// Addresses to listen on; each gets the transports below.
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(default = "default_transports")]
    pub transports: Vec<Transport>,
    /// Largest SIP message accepted, in bytes (RFC 3261 §18.1.1 leaves the bound to us).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default)]
    pub acl: Acl,
    #[serde(default)]
    pub timers: crate::sip::transaction::TimerSettings,
    /// Upper bound on live server transactions; past it new requests get 503.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
    /// Upper bound on the bytes of responses the transaction table keeps for retransmission;
    /// past it new INVITEs get 503 (Retry-After).
    #[serde(default = "default_max_transaction_bytes")]
    pub max_transaction_bytes: usize,
    /// Per-source rate limits before parsing, and the scanner User-Agents dropped unanswered.
    #[serde(default)]
    pub limits: crate::sip::limit::Settings,
    /// Upper bound on open TCP connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A TCP connection with no complete message for this long is closed.
    #[serde(default = "default_tcp_idle_seconds")]
    pub tcp_idle_seconds: u64,
    /// Value of the Server header; empty sends none.
    #[serde(default = "default_server_header")]
    pub server_header: String,
    /// Host name or address put into our Contact (183 responses: where the carrier sends PRACK).
    /// Unset: the address the request came to. Set it when listening on 0.0.0.0 or behind NAT.
    #[serde(default)]
    pub advertise_host: Option<String>,
    /// When the 183 with the announcement goes out reliably (RFC 3262, PRACK):
    /// "when-supported" (the INVITE lists 100rel in Supported or Require) or "when-required".
    #[serde(default)]
    pub reliable_provisional: crate::sip::edge::ReliableProvisional,
    /// SIP over TLS; without this section no TLS listener runs.
    #[serde(default)]
    pub tls: Option<crate::sip::tls::Settings>,
}

impl Default for Sip {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            transports: default_transports(),
            max_message_bytes: default_max_message_bytes(),
            acl: Acl::default(),
            timers: crate::sip::transaction::TimerSettings::default(),
            max_transactions: default_max_transactions(),
            max_transaction_bytes: default_max_transaction_bytes(),
            limits: crate::sip::limit::Settings::default(),
            max_connections: default_max_connections(),
            tcp_idle_seconds: default_tcp_idle_seconds(),
            server_header: default_server_header(),
            advertise_host: None,
            reliable_provisional: crate::sip::edge::ReliableProvisional::default(),
            tls: None,
        }
    }
}

fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 5060))]
}
fn default_transports() -> Vec<Transport> {
    vec![Transport::Udp, Transport::Tcp]
}
fn default_max_message_bytes() -> usize {
    64 * 1024
}
fn default_max_transactions() -> usize {
    200_000
}
fn default_max_transaction_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_max_connections() -> usize {
    1024
}
fn default_tcp_idle_seconds() -> u64 {
    300
}
fn default_server_header() -> String {
    "calltrackd".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// Which source addresses are carrier trunks. Anything else is refused before parsing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    /// CIDRs of the carrier's signalling hosts. Empty means nobody gets service.
    #[serde(default)]
    pub allow: Vec<ipnet::IpNet>,
    #[serde(default)]
    pub on_deny: DenyAction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyAction {
    /// Silently drop: scanners learn nothing.
    #[default]
    Drop,
    /// Answer 403 Forbidden.
    Reject,
}

/// The tracking-number pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Numbers {
    /// ISO 3166 region for numbers written in national form (`030...`).
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Treat `4930...` (no plus, no international prefix) as international. Some carriers send this.
    #[serde(default)]
    pub assume_international_without_plus: bool,
    #[serde(default)]
    pub pool: Vec<PoolEntry>,
}

fn default_region() -> String {
    "DE".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    /// The tracking number, any carrier form; stored as E.164.
    pub number: String,
    /// Key into `[campaigns]`.
    pub campaign: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Where the call is redirected: a `sip:` or `tel:` URI, sent as the 302's Contact.
    pub destination: String,
    /// What events keep of the caller: "pseudonymize" (a keyed pseudonym per key epoch) or
    /// "drop" (only whether the number was withheld).
    #[serde(default)]
    pub caller: crate::call::CallerPolicy,
    /// The disclosure hook: "early-media" (default when `announcement` is set), "external" or
    /// "none" (default otherwise).
    #[serde(default)]
    pub disclosure: Option<crate::call::Hook>,
    /// Id of an `[announcements.<id>]` entry, for `early-media`.
    #[serde(default)]
    pub announcement: Option<String>,
    /// For `external`: the media server URI that plays the announcement, sent as the 302 Contact.
    #[serde(default)]
    pub external_uri: Option<String>,
    /// An INVITE without SDP cannot hear early media: "skip" the announcement or "reject" (403).
    #[serde(default)]
    pub without_sdp: crate::call::disclosure::WithoutSdp,
    /// The key a caller presses during the announcement to object to tracking.
    #[serde(default = "default_objection_digit")]
    pub objection_digit: char,
}

fn default_objection_digit() -> char {
    crate::call::disclosure::DEFAULT_OBJECTION_DIGIT
}

impl Campaign {
    /// The hook in force, with the default applied.
    pub fn hook(&self) -> crate::call::Hook {
        use crate::call::Hook;
        self.disclosure.unwrap_or(if self.announcement.is_some() {
            Hook::EarlyMedia
        } else {
            Hook::None
        })
    }
}

/// A disclosure recording: WAV, 8 kHz mono 16-bit PCM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// Which wording this is; goes into every `call.disclosed` event.
    pub version: String,
    /// The default recording (relative paths are relative to the working directory).
    pub file: PathBuf,
    /// Recordings by the caller's country calling code, e.g. `"49" = "disclosure-de.wav"`.
    #[serde(default)]
    pub variants: BTreeMap<String, PathBuf>,
    /// Seconds into the recording by which everything a caller must be told has been said.
    /// A caller who hangs up later counts as informed; unset means the whole recording.
    #[serde(default)]
    pub informed_after_seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Directory of pseudonym keys; relative paths are under `data_dir`.
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
    #[serde(default)]
    pub rotation: crate::call::Rotation,
    /// National digits kept after the country code in `caller_region` (0 keeps only `+49`).
    #[serde(default)]
    pub region_digits: u8,
    /// Pseudonym keys kept, newest first; older ones are shredded at start-up and daily.
    #[serde(default = "default_keep_keys")]
    pub keep_keys: usize,
    /// Days an objection or restriction stays on the suppression list after it was recorded.
    #[serde(default = "default_suppression_days")]
    pub suppression_retention_days: u32,
    /// Days of signed disclosure evidence kept (whole days, file and seal together).
    #[serde(default = "default_evidence_days")]
    pub evidence_retention_days: u32,
    /// How precise every time in a call event is: `ms`, `s` or `minute`.
    #[serde(default)]
    pub time_precision: crate::call::TimePrecision,
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            key_dir: default_key_dir(),
            rotation: crate::call::Rotation::default(),
            region_digits: 0,
            keep_keys: default_keep_keys(),
            suppression_retention_days: default_suppression_days(),
            evidence_retention_days: default_evidence_days(),
            time_precision: crate::call::TimePrecision::default(),
        }
    }
}
fn default_suppression_days() -> u32 {
    730
}
fn default_evidence_days() -> u32 {
    1095
}
fn default_key_dir() -> PathBuf {
    PathBuf::from("keys")
}
fn default_keep_keys() -> usize {
    13
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// A tracing `EnvFilter` directive; `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: LogFormat::default(),
        }
    }
}
fn default_level() -> String {
    "info".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Config {
    /// A path from the config, taken relative to `data_dir` when not absolute.
    pub fn state_path(&self, p: &std::path::Path) -> PathBuf {
        self.data().resolve(p)
    }

    /// The layout under `data_dir`.
    pub fn data(&self) -> crate::data_dir::DataDir {
        crate::data_dir::DataDir::new(&self.data_dir)
    }
}

/// Carrier CDR feeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cdr {
    /// Carrier layouts by name, besides the built-in presets (`telekom-style`,
    /// `sipcarrier-csv`, `legacy-noheader`).
    #[serde(default)]
    pub formats: BTreeMap<String, crate::cdr::Format>,
    /// Spool directories to watch.
    #[serde(default)]
    pub feeds: Vec<crate::cdr::Feed>,
    /// A CDR without a Call-ID joins a SIP call whose offer was this close to its start.
    #[serde(default = "default_tolerance")]
    pub correlation_tolerance_seconds: u64,
    /// How long SIP calls stay joinable (hours).
    #[serde(default = "default_correlation_hours")]
    pub correlation_hours: u64,
    /// Upper bound on joinable SIP calls kept (about 300 bytes of memory each).
    #[serde(default = "default_correlation_capacity")]
    pub correlation_capacity: usize,
    /// Quarantined rows (the only place raw numbers rest) are purged after this many days.
    #[serde(default = "default_quarantine_days")]
    pub quarantine_days: u64,
    /// Record ids seen within this many days are dropped as duplicates.
    #[serde(default = "default_duplicate_days")]
    pub duplicate_window_days: u64,
    /// Bounds on CDR records, gzip streams and CDR times, for every feed and `cdr import`;
    /// a feed's own `limits` table overrides single keys.
    #[serde(default)]
    pub limits: crate::cdr::LimitsConfig,
}

impl Default for Cdr {
    fn default() -> Self {
        Self {
            formats: BTreeMap::new(),
            feeds: Vec::new(),
            correlation_tolerance_seconds: default_tolerance(),
            correlation_hours: default_correlation_hours(),
            correlation_capacity: default_correlation_capacity(),
            quarantine_days: default_quarantine_days(),
            duplicate_window_days: default_duplicate_days(),
            limits: crate::cdr::LimitsConfig::default(),
        }
    }
}
fn default_tolerance() -> u64 {
    120
}
fn default_correlation_hours() -> u64 {
    48
}
fn default_correlation_capacity() -> usize {
    // About 300 bytes of memory each (measured): 50,000 calls is about 15 MiB. Size it to the
    // calls of one CDR delay (the time from a call to its CDR arriving), with margin.
    50_000
}
fn default_quarantine_days() -> u64 {
    30
}
fn default_duplicate_days() -> u64 {
    14
}

impl Cdr {
    /// `[cdr.limits]` over the defaults.
    pub fn limits(&self) -> crate::cdr::Limits {
        self.limits.over(crate::cdr::Limits::default())
    }

    /// Built-in presets with the configured formats over them.
    pub fn all_formats(&self) -> BTreeMap<String, crate::cdr::Format> {
        let mut all = crate::cdr::builtin_presets().unwrap_or_default();
        all.extend(self.formats.clone());
        all
    }
}
