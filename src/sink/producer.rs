//! The librdkafka producer as the forwarder uses it: built from the config with a context that
//! counts client errors, and one outbox record turned into one Kafka message.

use std::sync::Arc;

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::headers::Meta;
use super::{Kafka, SinkError, Stats};
use crate::outbox::Record;

/// The producer type the forwarder drives.
pub type Producer = FutureProducer<Context>;

/// Routes librdkafka's client-level error reports (broker down, all brokers down, ...) to a
/// counter instead of one log line per report; the forwarder's rate-limited backlog warning is
/// what operators see.
pub struct Context {
    stats: Arc<Stats>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, _reason: &str) {
        // `reason` names brokers and is repeated on every reconnect attempt: not logged.
        self.stats.count_client_error();
        tracing::debug!(code = ?error.rdkafka_error_code(), "Kafka client reported an error.");
    }
}

/// A new producer for `kafka`. Reads the SASL secret file, if any.
pub fn build(kafka: &Kafka, stats: &Arc<Stats>) -> Result<Producer, SinkError> {
    let config = kafka.client_config()?;
    config
        .create_with_context(Context {
            stats: Arc::clone(stats),
        })
        .map_err(SinkError::Client)
}

/// How records are shaped for one topic.
pub struct Shape<'a> {
    pub topic: &'a str,
    /// `ce_source` when CloudEvents headers are on.
    pub cloudevents_source: Option<&'a str>,
    /// The Schema Registry id when payloads are framed.
    pub schema_id: Option<u32>,
}

/// Hands `rec` to the producer: key `call_key`, the routing (and CloudEvents) headers, the line
/// as payload (framed for the Schema Registry when configured). On `Err` the producer did not
/// take it (e.g. its queue is full) and it must be offered again.
pub fn send(
    producer: &Producer,
    shape: &Shape<'_>,
    rec: &Record,
    stats: &Stats,
) -> Result<DeliveryFuture, KafkaError> {
    let meta = Meta::parse(&rec.line).unwrap_or_else(|| {
        stats.count_unparsed();
        Meta::default()
    });
    let mut headers = OwnedHeaders::new_with_capacity(9);
    for (key, value) in meta.headers() {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    if let Some(ce) = shape.cloudevents_source.and_then(|s| meta.cloudevents(s)) {
        for (key, value) in ce {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
    }
    let framed = shape
        .schema_id
        .map(|id| super::registry::frame(id, &rec.line));
    let payload = framed.as_deref().unwrap_or(&rec.line[..]);
    let mut record = FutureRecord::<str, [u8]>::to(shape.topic)
        .payload(payload)
        .headers(headers);
    if let Some(key) = meta.call_key.as_deref() {
        record = record.key(key);
    }
    producer.send_result(record).map_err(|(e, _)| e)
}
