//! The `[outbox]` config section: its safe defaults, its checks and the `Options` it opens the
//! outbox with.

use std::time::Duration;

use serde::Deserialize;

use super::{Durability, Options};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Hard cap on the outbox on disk; when full, new calls get 503 rather than losing events.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub durability: Durability,
    /// Group-commit interval for `durability = "interval"`.
    #[serde(default = "default_sync_interval_ms")]
    pub sync_interval_ms: u64,
    /// Without Kafka: segments older than this are deleted. With Kafka, delivered segments go
    /// after `kafka.retention_hours_after_delivery` instead, and undelivered ones are kept.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            segment_bytes: default_segment_bytes(),
            max_bytes: default_max_bytes(),
            durability: Durability::default(),
            sync_interval_ms: default_sync_interval_ms(),
            retention_hours: default_retention_hours(),
        }
    }
}
fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_max_bytes() -> u64 {
    4 * 1024 * 1024 * 1024
}
fn default_sync_interval_ms() -> u64 {
    10
}
fn default_retention_hours() -> u64 {
    168
}

impl Settings {
    /// Problems as (key path relative to `[outbox]`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: &str| {
            problems.push((key.to_owned(), message.to_owned()));
        };
        if self.segment_bytes < 4096 || self.segment_bytes > self.max_bytes {
            problem(
                "segment_bytes",
                "must be at least 4096 and at most outbox.max_bytes",
            );
        }
        if self.sync_interval_ms == 0 || self.sync_interval_ms > 10_000 {
            problem("sync_interval_ms", "must be 1..=10000");
        }
        if self.retention_hours == 0 {
            problem("retention_hours", "must be at least 1");
        }
        problems
    }

    /// What [`super::Outbox::open`] takes.
    pub fn options(&self) -> Options {
        Options {
            segment_bytes: self.segment_bytes,
            max_bytes: self.max_bytes,
            sync_interval: Duration::from_millis(self.sync_interval_ms),
            durability: self.durability,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert!(Settings::default().validate().is_empty());
    }

    #[test]
    fn problems_name_keys_relative_to_the_section() {
        let bad = Settings {
            segment_bytes: 100,
            sync_interval_ms: 0,
            retention_hours: 0,
            ..Settings::default()
        };
        let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["segment_bytes", "sync_interval_ms", "retention_hours"]
        );
    }
}
