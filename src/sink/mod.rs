//! Sinks that ship outbox events elsewhere; today the Kafka forwarder.
//!
//! The forwarder drains the outbox reader `"kafka"` into one topic: message key `call_key` (so
//! a call's events share a partition and stay in order), headers `event-type`,
//! `schema-version`, `key-id`, payload the exact JSON line. Delivery is at least once: the reader
//! position is committed only past records the brokers acknowledged (`acks=all`, idempotent
//! producer). A record can reach Kafka twice only when it was acknowledged but not yet committed
//! before a crash, or when a failed delivery had in fact been written; consumers deduplicate by
//! `event_id`.

mod config;
mod error;
mod forwarder;
mod headers;
mod producer;
mod registry;
mod stats;
mod window;

#[cfg(test)]
mod tests;

pub use config::{ConfigError, Kafka, Mechanism, Protocol, Security, read_secret, secret_path};
pub use error::SinkError;
pub use forwarder::{Forwarder, ForwarderReport, READER};
pub use headers::{EVENT_TYPE, KEY_ID, Meta, SCHEMA_VERSION};
pub use registry::{RegistryError, SCHEMA, SchemaRegistry, frame};
pub use stats::Stats;
