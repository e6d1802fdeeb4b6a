//! The `[kafka]` config section and the librdkafka producer settings built from it.
//!
//! The producer settings are chosen for the outbox behind us (see `client_config`): the
//! idempotent producer (KIP-98) with `acks=all` keeps each partition's records in order and free
//! of producer-retry duplicates within one producer session, and `message.timeout.ms=0` lets
//! librdkafka retry a send for as long as it takes instead of giving up and making us resend.
//! Properties that would weaken that are refused, and so are secrets in the config text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::secret::SecretPathError;
use serde::Deserialize;

/// Settings librdkafka gets from us and the `properties` table may not override, with why.
const OWNED: &[&str] = &[
    // Typed fields above are the one place for these.
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "ssl.ca.location",
    // Secrets never come from the config text (ENGINEERING.md, Config).
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "ssl_key",
    "sasl.oauthbearer.client.secret",
    // The delivery callbacks the forwarder relies on.
    "delivery.report.only.error",
    "dr_msg_cb",
    "dr_cb",
    // Transactions need a different produce path than ours.
    "transactional.id",
];

/// How the producer connects and where events go. Every key is optional but
/// `bootstrap_servers`; defaults suit a local broker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// Topic every call event is published to (created by the operator; never auto-created).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `client.id` the brokers see in their logs and quotas.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Transport security and authentication; absent means plaintext without authentication.
    #[serde(default)]
    pub security: Option<Security>,
    /// Extra librdkafka properties passed through as they are (e.g. `"batch.size"`); those that
    /// would break ordering, durability or secrecy are refused by `validate`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Most events read from the outbox at once, and most events sent but not yet acknowledged.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// How long shutdown waits for in-flight events to be acknowledged, in milliseconds.
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
    /// Outbox segments whose events were all delivered are deleted this many hours after their
    /// last write.
    #[serde(default = "default_retention_hours")]
    pub retention_hours_after_delivery: u64,
    /// While deliveries are stuck, the backlog warning is logged at most once per this many
    /// seconds.
    #[serde(default = "default_warn_interval")]
    pub backlog_warn_interval_seconds: u64,
    /// CloudEvents binary-mode headers (`ce_specversion`, `ce_id`, `ce_source`, `ce_type`,
    /// `ce_time`, `content-type`) beside `event-type`, `schema-version` and `key-id`; all taken
    /// from the event's own fields, nothing personal.
    #[serde(default = "default_true")]
    pub cloudevents: bool,
    /// `ce_source` of every event: a URI-reference naming this deployment (not a host's address).
    #[serde(default = "default_cloudevents_source")]
    pub cloudevents_source: String,
    /// Confluent Schema Registry framing of the payload; absent sends plain JSON lines.
    #[serde(default)]
    pub schema_registry: Option<super::SchemaRegistry>,
}

/// `[kafka.security]`: how the connection is protected and authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Transport: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: Protocol,
    /// SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`); required for the `sasl_*`
    /// protocols, refused for the others.
    #[serde(default)]
    pub sasl_mechanism: Option<Mechanism>,
    /// SASL user name; required with `sasl_mechanism`.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// Where the SASL password is read from: an absolute path, or a bare name looked up as the
    /// systemd credential `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`). One trailing line
    /// feed is removed. Required with `sasl_mechanism`.
    #[serde(default)]
    pub sasl_password_file: Option<String>,
    /// PEM file of the CA certificates that sign the brokers' certificates; the system store is
    /// used when absent. Only for `ssl` and `sasl_ssl`.
    #[serde(default)]
    pub ssl_ca_file: Option<PathBuf>,
}

/// `security.protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

/// SASL mechanisms librdkafka implements without Cyrus SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// Why the `[kafka]` section cannot be used. Names the key, never echoes a value. Alone it
/// reads `kafka.<key>: <message>`; the config loader puts [`ConfigError::key`] under `kafka.`
/// itself and adds the line.
#[derive(Debug, thiserror::Error)]
#[error("kafka.{}: {}", self.key(), self.message())]
pub enum ConfigError {
    Empty(&'static str),
    Zero(&'static str),
    /// A `[kafka.security]` key the sasl protocols need.
    SaslMissing(&'static str),
    /// A `[kafka.security]` key only the sasl protocols take.
    SaslUnexpected(&'static str),
    SslUnexpected,
    /// The secret-file errors carry the key that names the file (relative to `[kafka]`): the
    /// SASL password or the Schema Registry's.
    SecretPath(&'static str, SecretPathError),
    SecretRead(&'static str, #[source] std::io::Error),
    SecretEmpty(&'static str),
    SecretEncoding(&'static str),
    /// A passthrough property is one we set ourselves, a secret, or a weakening of delivery
    /// guarantees. The payload is the property name, which is ours to document, not user data.
    Refused(String),
    Weakening(String),
    /// `[kafka.schema_registry]` (the registry's error names its key; boxed because a registry
    /// error can hold a secret-file error of this type).
    Registry(Box<super::RegistryError>),
}

impl ConfigError {
    /// The key path relative to `[kafka]`, e.g. `topic` or `security.sasl_username`.
    pub fn key(&self) -> String {
        match self {
            Self::Empty(key)
            | Self::Zero(key)
            | Self::SecretPath(key, _)
            | Self::SecretRead(key, _)
            | Self::SecretEmpty(key)
            | Self::SecretEncoding(key) => (*key).to_owned(),
            Self::SaslMissing(key) | Self::SaslUnexpected(key) => format!("security.{key}"),
            Self::SslUnexpected => "security.ssl_ca_file".to_owned(),
            Self::Refused(_) | Self::Weakening(_) => "properties".to_owned(),
            Self::Registry(e) => e.key(),
        }
    }

    /// What is wrong with that key, without naming it.
    pub fn message(&self) -> String {
        match self {
            Self::Empty(_) => "must not be empty".to_owned(),
            Self::Zero(_) => "must be positive".to_owned(),
            Self::SaslMissing(_) => "required for the sasl protocols".to_owned(),
            Self::SaslUnexpected(_) => "only allowed with the sasl protocols".to_owned(),
            Self::SslUnexpected => "only allowed with the ssl protocols".to_owned(),
            Self::SecretPath(_, e) => e.to_string(),
            Self::SecretRead(..) => "could not be read".to_owned(),
            Self::SecretEmpty(_) => "file is empty".to_owned(),
            Self::SecretEncoding(_) => "not UTF-8".to_owned(),
            Self::Refused(name) => format!("{name:?} may not be set here"),
            Self::Weakening(name) => {
                format!("{name:?} has a value that breaks ordered, acknowledged delivery")
            }
            Self::Registry(e) => e.message(),
        }
    }
}

/// Where the SASL password file is named.
const SASL_PASSWORD_FILE: &str = "security.sasl_password_file";

fn default_topic() -> String {
    "call-events".to_owned()
}
fn default_client_id() -> String {
    "calltrackd".to_owned()
}
fn default_batch_events() -> usize {
    10_000
}
fn default_flush_timeout_ms() -> u64 {
    10_000
}
fn default_retention_hours() -> u64 {
    24
}
fn default_warn_interval() -> u64 {
    60
}
fn default_true() -> bool {
    true
}
fn default_cloudevents_source() -> String {
    "urn:calltrackd".to_owned()
}

impl Kafka {
    /// A config with every default and the given brokers (for tests and the example file).
    pub fn new(bootstrap_servers: impl Into<String>) -> Kafka {
        Kafka {
            bootstrap_servers: bootstrap_servers.into(),
            topic: default_topic(),
            client_id: default_client_id(),
            security: None,
            properties: BTreeMap::new(),
            batch_events: default_batch_events(),
            flush_timeout_ms: default_flush_timeout_ms(),
            retention_hours_after_delivery: default_retention_hours(),
            backlog_warn_interval_seconds: default_warn_interval(),
            cloudevents: true,
            cloudevents_source: default_cloudevents_source(),
            schema_registry: None,
        }
    }

    pub fn flush_timeout(&self) -> Duration {
        Duration::from_millis(self.flush_timeout_ms)
    }

    pub fn retention_age(&self) -> Duration {
        Duration::from_secs(self.retention_hours_after_delivery.saturating_mul(3600))
    }

    pub fn backlog_warn_interval(&self) -> Duration {
        Duration::from_secs(self.backlog_warn_interval_seconds)
    }

    /// Checks everything that can be checked without reading files or the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::Empty("bootstrap_servers"));
        }
        if self.topic.is_empty() {
            return Err(ConfigError::Empty("topic"));
        }
        if self.client_id.is_empty() {
            return Err(ConfigError::Empty("client_id"));
        }
        if self.batch_events == 0 {
            return Err(ConfigError::Zero("batch_events"));
        }
        if self.backlog_warn_interval_seconds == 0 {
            return Err(ConfigError::Zero("backlog_warn_interval_seconds"));
        }
        if let Some(sec) = &self.security {
            sec.validate()?;
        }
        for (key, value) in &self.properties {
            check_property(key, value)?;
        }
        if self.cloudevents && self.cloudevents_source.trim().is_empty() {
            return Err(ConfigError::Empty("cloudevents_source"));
        }
        if let Some(registry) = &self.schema_registry {
            registry
                .validate()
                .map_err(|e| ConfigError::Registry(Box::new(e)))?;
        }
        Ok(())
    }

    /// The producer settings: ours, then the passthrough properties. Reads the SASL secret.
    ///
    /// Choices (each a trade-off for an outbox-backed producer):
    /// - `enable.idempotence=true`, `acks=all`, `max.in.flight.requests.per.connection=5`: the
    ///   broker drops producer-retry duplicates and keeps order within a partition with up to 5
    ///   requests in flight (the most idempotence allows).
    /// - `enable.gapless.guarantee=true`: an error that would leave a hole in a partition's
    ///   sequence stops the producer (fatal) instead of letting later records through; the
    ///   forwarder then builds a new producer and resends from the first unacknowledged record,
    ///   so one call's events never overtake each other.
    /// - `message.timeout.ms=0` (infinite): while brokers are down librdkafka keeps retrying the
    ///   same records with the same sequence numbers, which the broker deduplicates. A finite
    ///   timeout would fail them locally and make us resend them as new records, which
    ///   duplicates any the broker had written but not acknowledged. The outbox already holds
    ///   everything durably, so nothing is gained by giving up; the backlog gauge and the
    ///   rate-limited warning report the stall. Operators may still set a finite value in
    ///   `properties`; the forwarder's resend path then handles the timeouts.
    /// - `partitioner=murmur2_random`: the Java client's partitioner, so other producers keyed
    ///   by `call_key` pick the same partitions.
    /// - `compression.type=lz4`, `linger.ms=5`: cheap compression of similar JSON lines, and a
    ///   short wait to fill batches without adding visible latency.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        self.validate()?;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("enable.gapless.guarantee", "true")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", "0")
            .set("partitioner", "murmur2_random")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("retry.backoff.ms", "100")
            .set("retry.backoff.max.ms", "2000");
        if let Some(sec) = &self.security {
            sec.apply(&mut c)?;
        }
        for (key, value) in &self.properties {
            c.set(key, value);
        }
        Ok(c)
    }
}

impl Security {
    fn is_sasl(&self) -> bool {
        matches!(self.protocol, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    fn is_ssl(&self) -> bool {
        matches!(self.protocol, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.is_sasl() {
            if self.sasl_mechanism.is_none() {
                return Err(ConfigError::SaslMissing("sasl_mechanism"));
            }
            match &self.sasl_username {
                None => return Err(ConfigError::SaslMissing("sasl_username")),
                Some(u) if u.is_empty() => {
                    return Err(ConfigError::Empty("security.sasl_username"));
                }
                Some(_) => {}
            }
            match &self.sasl_password_file {
                None => return Err(ConfigError::SaslMissing("sasl_password_file")),
                Some(f) => secret_check(f, SASL_PASSWORD_FILE)?,
            }
        } else {
            if self.sasl_mechanism.is_some() {
                return Err(ConfigError::SaslUnexpected("sasl_mechanism"));
            }
            if self.sasl_username.is_some() {
                return Err(ConfigError::SaslUnexpected("sasl_username"));
            }
            if self.sasl_password_file.is_some() {
                return Err(ConfigError::SaslUnexpected("sasl_password_file"));
            }
        }
        if !self.is_ssl() && self.ssl_ca_file.is_some() {
            return Err(ConfigError::SslUnexpected);
        }
        Ok(())
    }

    fn apply(&self, c: &mut ClientConfig) -> Result<(), ConfigError> {
        let protocol = match self.protocol {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(ca) = &self.ssl_ca_file {
            c.set("ssl.ca.location", ca.to_string_lossy());
        }
        if let (Some(m), Some(user), Some(file)) = (
            self.sasl_mechanism,
            &self.sasl_username,
            &self.sasl_password_file,
        ) {
            let mechanism = match m {
                Mechanism::Plain => "PLAIN",
                Mechanism::ScramSha256 => "SCRAM-SHA-256",
                Mechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            let dir = crate::config::secret::credentials_dir();
            let path = secret_path(file, dir.as_deref(), SASL_PASSWORD_FILE)?;
            let password = read_secret(&path, SASL_PASSWORD_FILE)?;
            c.set("sasl.mechanism", mechanism)
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        Ok(())
    }
}

/// Whether `value` can name a secret file (`key` is where it is configured).
pub(super) fn secret_check(value: &str, key: &'static str) -> Result<(), ConfigError> {
    crate::config::secret::check(value).map_err(|e| ConfigError::SecretPath(key, e))
}

/// Resolves a secret file setting (`key`, relative to `[kafka]`) against
/// `$CREDENTIALS_DIRECTORY` (passed in for testability).
pub fn secret_path(
    value: &str,
    credentials_dir: Option<&Path>,
    key: &'static str,
) -> Result<PathBuf, ConfigError> {
    crate::config::secret::resolve(value, credentials_dir)
        .map_err(|e| ConfigError::SecretPath(key, e))
}

/// Reads the secret file configured at `key`: one trailing line feed (and a CR before it) is
/// dropped.
pub fn read_secret(path: &Path, key: &'static str) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::SecretRead(key, e))?;
    let mut text = String::from_utf8(bytes).map_err(|_| ConfigError::SecretEncoding(key))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(ConfigError::SecretEmpty(key));
    }
    Ok(text)
}

/// Refuses passthrough properties that we own or that weaken delivery.
fn check_property(key: &str, value: &str) -> Result<(), ConfigError> {
    let k = key.trim();
    if OWNED.contains(&k) || k.contains("password") || k.contains("secret") {
        return Err(ConfigError::Refused(k.to_owned()));
    }
    let v = value.trim();
    let weak = match k {
        "enable.idempotence" | "enable.gapless.guarantee" => !v.eq_ignore_ascii_case("true"),
        "acks" | "request.required.acks" => !(v == "all" || v == "-1"),
        "max.in.flight.requests.per.connection" | "max.in.flight" => {
            !matches!(v.parse::<u32>(), Ok(1..=5))
        }
        // Our own partitioning by `call_key` is what keeps a call's events in order.
        "partitioner" => !matches!(
            v,
            "murmur2_random"
                | "murmur2"
                | "consistent"
                | "consistent_random"
                | "fnv1a"
                | "fnv1a_random"
        ),
        _ => false,
    };
    if weak {
        return Err(ConfigError::Weakening(k.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Kafka, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let k = parse(r#"{"bootstrap_servers":"127.0.0.1:9092"}"#).unwrap();
        assert_eq!(k, Kafka::new("127.0.0.1:9092"));
        assert_eq!(k.topic, "call-events");
        assert_eq!(k.client_id, "calltrackd");
        assert_eq!(k.batch_events, 10_000);
        assert_eq!(k.flush_timeout_ms, 10_000);
        assert_eq!(k.retention_hours_after_delivery, 24);
        assert_eq!(k.backlog_warn_interval_seconds, 60);
        k.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse(r#"{"bootstrap_servers":"x:1","topik":"a"}"#).is_err());
        assert!(
            parse(r#"{"bootstrap_servers":"x:1","security":{"protocol":"ssl","pasword":"a"}}"#)
                .is_err()
        );
    }

    #[test]
    fn security_enums_use_the_documented_spellings() {
        let k = parse(
            r#"{"bootstrap_servers":"x:1","security":{"protocol":"sasl_ssl",
            "sasl_mechanism":"SCRAM-SHA-512","sasl_username":"u",
            "sasl_password_file":"kafka-password","ssl_ca_file":"/etc/ca.pem"}}"#,
        )
        .unwrap();
        let s = k.security.as_ref().unwrap();
        assert_eq!(s.protocol, Protocol::SaslSsl);
        assert_eq!(s.sasl_mechanism, Some(Mechanism::ScramSha512));
        k.validate().unwrap();
        assert!(parse(r#"{"bootstrap_servers":"x:1","security":{"protocol":"SSL"}}"#).is_err());
    }

    #[test]
    fn guarantees_are_set_and_cannot_be_weakened() {
        let k = Kafka::new("127.0.0.1:1");
        let c = k.client_config().unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.get("max.in.flight.requests.per.connection"), Some("5"));
        assert_eq!(c.get("compression.type"), Some("lz4"));

        for (key, value) in [
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("request.required.acks", "0"),
            ("max.in.flight.requests.per.connection", "6"),
            ("enable.gapless.guarantee", "false"),
            ("partitioner", "random"),
        ] {
            let mut k = Kafka::new("127.0.0.1:1");
            k.properties.insert(key.into(), value.into());
            assert!(
                matches!(k.validate(), Err(ConfigError::Weakening(_))),
                "{key}={value} must be refused"
            );
        }
        let mut k = Kafka::new("127.0.0.1:1");
        k.properties.insert("acks".into(), "all".into());
        k.properties.insert("batch.size".into(), "65536".into());
        k.properties
            .insert("message.timeout.ms".into(), "30000".into());
        let c = k.client_config().unwrap();
        assert_eq!(c.get("batch.size"), Some("65536"));
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
    }

    #[test]
    fn secrets_and_owned_keys_are_refused_in_properties() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "bootstrap.servers",
            "client.id",
        ] {
            let mut k = Kafka::new("127.0.0.1:1");
            k.properties.insert(key.into(), "hunter2".into());
            let err = k.validate().unwrap_err();
            assert!(matches!(err, ConfigError::Refused(_)), "{key}");
            assert!(!err.to_string().contains("hunter2"), "value never echoed");
        }
    }

    #[test]
    fn sasl_needs_mechanism_user_and_secret_file() {
        let mut k = Kafka::new("127.0.0.1:1");
        k.security = Some(Security {
            protocol: Protocol::SaslPlaintext,
            sasl_mechanism: Some(Mechanism::Plain),
            sasl_username: Some("u".into()),
            sasl_password_file: None,
            ssl_ca_file: None,
        });
        assert!(matches!(
            k.validate(),
            Err(ConfigError::SaslMissing("sasl_password_file"))
        ));
        if let Some(s) = k.security.as_mut() {
            s.sasl_password_file = Some("../up".into());
        }
        assert!(matches!(
            k.validate(),
            Err(ConfigError::SecretPath(
                SASL_PASSWORD_FILE,
                SecretPathError::NotAPathOrName
            ))
        ));
        if let Some(s) = k.security.as_mut() {
            s.protocol = Protocol::Ssl;
            s.sasl_password_file = None;
        }
        assert!(matches!(
            k.validate(),
            Err(ConfigError::SaslUnexpected("sasl_mechanism"))
        ));
    }

    #[test]
    fn secret_is_read_from_file_or_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kafka-password"), "s3cret\n").unwrap();
        let key = SASL_PASSWORD_FILE;
        let p = secret_path("kafka-password", Some(dir.path()), key).unwrap();
        assert_eq!(read_secret(&p, key).unwrap(), "s3cret");
        assert!(matches!(
            secret_path("kafka-password", None, key),
            Err(ConfigError::SecretPath(
                _,
                SecretPathError::NoCredentialsDirectory
            ))
        ));
        let abs = dir.path().join("kafka-password");
        let abs = abs.to_str().unwrap();
        assert_eq!(secret_path(abs, None, key).unwrap(), Path::new(abs));
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        assert!(matches!(
            read_secret(&dir.path().join("empty"), key),
            Err(ConfigError::SecretEmpty(_))
        ));
        assert!(matches!(
            read_secret(&dir.path().join("missing"), key),
            Err(ConfigError::SecretRead(..))
        ));
    }

    #[test]
    fn sasl_settings_reach_the_client_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "pw1").unwrap();
        let mut k = Kafka::new("127.0.0.1:1");
        k.security = Some(Security {
            protocol: Protocol::SaslSsl,
            sasl_mechanism: Some(Mechanism::ScramSha256),
            sasl_username: Some("calltrackd".into()),
            sasl_password_file: Some(file.to_str().unwrap().into()),
            ssl_ca_file: Some("/etc/ssl/ca.pem".into()),
        });
        let c = k.client_config().unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(c.get("sasl.username"), Some("calltrackd"));
        assert_eq!(c.get("sasl.password"), Some("pw1"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ssl/ca.pem"));
    }
}
