//! Opt-in Confluent Schema Registry framing: the event schema (`schema/call-event.v1.json`,
//! compiled in, so the registered schema is the one this binary writes) is registered as a JSON
//! Schema under the topic's value subject, and every payload is framed as the registry's wire
//! format expects: magic byte 0, the schema id as 4 bytes big-endian, then the JSON line
//! unchanged. Consumers using Confluent's JSON Schema deserializer read it as they are; others
//! skip the 5 bytes.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

/// The event schema this binary writes.
pub const SCHEMA: &str = include_str!("../../schema/call-event.v1.json");

/// `[kafka.schema_registry]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistry {
    /// Base URL of the registry, e.g. `https://registry.example.net:8081`.
    pub url: String,
    /// The subject to register under; default `<topic>-value` (TopicNameStrategy).
    #[serde(default)]
    pub subject: Option<String>,
    /// Use this schema id and register nothing (the schema was registered by other means).
    #[serde(default)]
    pub schema_id: Option<u32>,
    /// HTTP basic authentication user; the password comes from `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// An absolute path or a systemd credential name.
    #[serde(default)]
    pub password_file: Option<String>,
    /// PEM CA certificates for an `https` registry; the bundled web roots otherwise.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("kafka.{}: {}", self.key(), self.message())]
    Url,
    #[error("kafka.{}: {}", self.key(), self.message())]
    Credentials,
    /// The password file; the inner error names `kafka.schema_registry.password_file`.
    #[error(transparent)]
    Secret(#[from] super::ConfigError),
    #[error("kafka.{}: {}", self.key(), self.message())]
    Ca(String),
    #[error("schema registry request failed")]
    Http(#[from] ureq::Error),
    #[error("schema registry answered without a schema id")]
    Answer,
}

/// Where the registry's password file is named, relative to `[kafka]`.
const PASSWORD_FILE: &str = "schema_registry.password_file";

impl RegistryError {
    /// The key path relative to `[kafka]`.
    pub fn key(&self) -> String {
        match self {
            Self::Url => "schema_registry.url".to_owned(),
            Self::Secret(e) => e.key(),
            Self::Ca(_) => "schema_registry.ca_file".to_owned(),
            Self::Credentials | Self::Http(_) | Self::Answer => "schema_registry".to_owned(),
        }
    }

    /// What is wrong with that key, without naming it.
    pub fn message(&self) -> String {
        match self {
            Self::Url => "must start with http:// or https://".to_owned(),
            Self::Credentials => "username and password_file go together".to_owned(),
            Self::Secret(e) => e.message(),
            Self::Ca(reason) => reason.clone(),
            Self::Http(_) | Self::Answer => self.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl SchemaRegistry {
    pub fn validate(&self) -> Result<(), RegistryError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(RegistryError::Url);
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(RegistryError::Credentials);
        }
        if let Some(file) = &self.password_file {
            super::config::secret_check(file, PASSWORD_FILE)?;
        }
        Ok(())
    }

    pub fn subject(&self, topic: &str) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| format!("{topic}-value"))
    }

    /// The schema id to frame with: the configured one, or the id the registry gives when the
    /// schema is registered (registering the same schema again returns the same id). Blocking.
    pub fn schema_id(&self, topic: &str) -> Result<u32, RegistryError> {
        if let Some(id) = self.schema_id {
            return Ok(id);
        }
        self.validate()?;
        let agent = self.agent()?;
        let url = format!(
            "{}/subjects/{}/versions",
            self.url.trim_end_matches('/'),
            percent(&self.subject(topic))
        );
        let body = serde_json::json!({ "schemaType": "JSON", "schema": SCHEMA }).to_string();
        let mut request = agent
            .post(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        if let (Some(user), Some(file)) = (&self.username, &self.password_file) {
            let dir = crate::config::secret::credentials_dir();
            let path = super::secret_path(file, dir.as_deref(), PASSWORD_FILE)?;
            let password = super::read_secret(&path, PASSWORD_FILE)?;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header("Authorization", &format!("Basic {token}"));
        }
        let mut response = request.send(body.as_str())?;
        let text = response.body_mut().read_to_string()?;
        let registered: Registered =
            serde_json::from_str(&text).map_err(|_| RegistryError::Answer)?;
        Ok(registered.id)
    }

    fn agent(&self) -> Result<ureq::Agent, RegistryError> {
        let mut config = ureq::Agent::config_builder().timeout_global(Some(TIMEOUT));
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| RegistryError::Ca(e.to_string()))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(RegistryError::Ca("no PEM certificate in it".to_owned()));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(config.build().new_agent())
    }
}

/// A subject name as one URL path segment.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The registry wire format: magic byte 0, schema id (big-endian), the JSON line.
pub fn frame(schema_id: u32, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 5);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(line);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn registry(url: &str) -> SchemaRegistry {
        SchemaRegistry {
            url: url.into(),
            subject: None,
            schema_id: None,
            username: None,
            password_file: None,
            ca_file: None,
        }
    }

    #[test]
    fn frames_are_magic_byte_id_then_the_line() {
        assert_eq!(frame(0x0102_0304, b"{}"), [0, 1, 2, 3, 4, b'{', b'}']);
    }

    #[test]
    fn the_compiled_in_schema_is_json() {
        let v: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(v["title"], "calltrackd event, schema version 1");
    }

    #[test]
    fn settings_are_checked() {
        assert!(registry("http://r:8081").validate().is_ok());
        assert!(matches!(
            registry("r:8081").validate(),
            Err(RegistryError::Url)
        ));
        let mut r = registry("https://r");
        r.username = Some("u".into());
        assert!(matches!(r.validate(), Err(RegistryError::Credentials)));
        assert_eq!(
            registry("http://r").subject("call-events"),
            "call-events-value"
        );
        assert_eq!(percent("a b/c"), "a%20b%2Fc");
        let mut fixed = registry("http://127.0.0.1:1");
        fixed.schema_id = Some(7);
        assert_eq!(
            fixed.schema_id("t").unwrap(),
            7,
            "no network when the id is given"
        );
    }
}
