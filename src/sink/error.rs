//! Errors of the Kafka sink, in fixed words. Broker-side trouble is not an error here (the
//! forwarder retries it for as long as it runs); these are what stops it from starting or going on.

use rdkafka::error::KafkaError;

use super::ConfigError;
use crate::outbox;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The `[kafka]` section cannot be used (the message names the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka refused the producer settings.
    #[error("kafka producer could not be created")]
    Client(#[source] KafkaError),
    /// Reading, committing or opening the outbox reader failed.
    #[error("outbox reader failed")]
    Outbox(#[from] outbox::Error),
    /// A blocking helper task (flush, drop, retention) did not finish.
    #[error("kafka sink background task failed")]
    Background,
}
