//! Output: records encoded and produced through the worker's (transactional) producer.
//!
//! Under `ExactlyOnce` every record sent here belongs to the worker's open transaction and
//! becomes visible to `read_committed` readers only when the commit cycle commits it.

use crate::codec::Codec;
use crate::error::{Error, KafkaOp, Result};
use crate::pipeline::node::Node;
use crate::poison::Poison;
use crate::record::Record;
use crate::runtime::stats::Stats;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::Producer;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How output records are spread over the output topic's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// By key hash (murmur2, as the Java client), random for records without a key.
    #[default]
    ByKey,
    /// The same partition number as the input record (the input and output topics must
    /// have as many partitions).
    SameAsInput,
}

/// Where a pipeline writes: a topic with key and value serdes.
pub struct Sink<K, V> {
    pub(crate) topic: crate::pipeline::TopicName,
    pub(crate) key: Arc<dyn Codec<K>>,
    pub(crate) value: Arc<dyn Codec<V>>,
    pub(crate) partitioning: Partitioning,
}

impl<K, V> Sink<K, V> {
    /// Writes to `topic`, encoding keys and values with the given serdes.
    pub fn topic(topic: impl Into<String>, key: impl Codec<K>, value: impl Codec<V>) -> Self {
        Sink {
            topic: crate::pipeline::TopicName::External(topic.into()),
            key: Arc::new(key),
            value: Arc::new(value),
            partitioning: Partitioning::ByKey,
        }
    }

    /// The topic's name as given (internal topics without the application id prefix).
    pub fn topic_name(&self) -> &str {
        match &self.topic {
            crate::pipeline::TopicName::External(t) | crate::pipeline::TopicName::Internal(t) => t,
        }
    }

    /// Chooses the output partitioning.
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }
}

/// Counts delivery failures (at-least-once must not commit past one) and remembers the
/// last delivered offset of each changelog partition (for state checkpoints).
pub(crate) struct OutputContext {
    pub(crate) delivery_failures: AtomicU64,
    pub(crate) changelog_offsets: Mutex<HashMap<(String, i32), i64>>,
}

impl ClientContext for OutputContext {}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Err((e, _)) => {
                self.delivery_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "an output record was not delivered");
            }
            Ok(m) if m.topic().ends_with(CHANGELOG_SUFFIX) => {
                let mut offsets = self
                    .changelog_offsets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let last = offsets
                    .entry((m.topic().to_string(), m.partition()))
                    .or_insert(-1);
                *last = (*last).max(m.offset());
            }
            Ok(_) => {}
        }
    }
}

/// The worker's producer, shared by every task's sink.
pub(crate) struct OutputProducer {
    pub(crate) producer: ThreadedProducer<OutputContext>,
    pub(crate) stats: Arc<Stats>,
}

const CHANGELOG_SUFFIX: &str = "-changelog";

impl OutputProducer {
    /// The offset after the last delivered record of a changelog partition, if any.
    pub(crate) fn changelog_end(&self, topic: &str, partition: i32) -> Option<i64> {
        let offsets = self
            .producer
            .context()
            .changelog_offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        offsets.get(&(topic.to_string(), partition)).map(|o| o + 1)
    }

    /// Sends one record, waiting while librdkafka's queue is full.
    pub(crate) fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: Option<i64>,
        headers: Option<OwnedHeaders>,
    ) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        record.key = key;
        record.payload = value;
        record.partition = partition;
        record.timestamp = timestamp;
        record.headers = headers;
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.stats.records_out.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Back-pressure: let the background thread drain deliveries.
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(Error::kafka(KafkaOp::Produce, e)),
            }
        }
    }
}

/// The last node of a chain.
pub(crate) struct SinkNode<K, V> {
    /// The resolved topic name.
    pub(crate) topic: String,
    pub(crate) sink: Arc<Sink<K, V>>,
    pub(crate) output: Arc<OutputProducer>,
    pub(crate) poison: Arc<Poison>,
}

/// One record encoded for its topic.
pub(crate) struct Encoded<'a> {
    pub(crate) key: Option<Cow<'a, [u8]>>,
    pub(crate) value: Option<Cow<'a, [u8]>>,
    pub(crate) headers: Option<OwnedHeaders>,
    pub(crate) partition: Option<i32>,
    pub(crate) timestamp: Option<i64>,
}

impl<K: 'static, V: 'static> Sink<K, V> {
    /// Encodes `r` for this sink (`topic` is the resolved name, for errors).
    pub(crate) fn encode<'a>(&self, topic: &str, r: &'a Record<K, V>) -> Result<Encoded<'a>> {
        let encode_error = |part: &'static str, message: String| Error::Encode {
            part,
            topic: topic.to_string(),
            message,
        };
        let key = match &r.key {
            None => None,
            Some(k) => self.key.encode(k).map_err(|e| encode_error("key", e))?,
        };
        let value = self
            .value
            .encode(&r.value)
            .map_err(|e| encode_error("value", e))?;
        let headers = if r.headers.is_empty() {
            None
        } else {
            let mut hs = OwnedHeaders::new_with_capacity(r.headers.len());
            for h in &r.headers {
                hs = hs.insert(KHeader {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
            Some(hs)
        };
        let partition = match self.partitioning {
            Partitioning::ByKey => None,
            Partitioning::SameAsInput => Some(r.origin.partition),
        };
        Ok(Encoded {
            key,
            value,
            headers,
            partition,
            timestamp: r.timestamp,
        })
    }

    /// The topic's name for `application_id` (internal topics are prefixed with it).
    pub(crate) fn resolve(&self, application_id: &str) -> String {
        self.topic.resolve(application_id)
    }
}

impl OutputProducer {
    /// Sends an encoded record to `topic`.
    pub(crate) fn send_encoded(&self, topic: &str, e: Encoded<'_>) -> Result<()> {
        self.send(
            topic,
            e.partition,
            e.key.as_deref(),
            e.value.as_deref(),
            e.timestamp,
            e.headers,
        )
    }
}

impl<K: 'static, V: 'static> Node<K, V> for SinkNode<K, V> {
    fn assign(&mut self) -> Result<()> {
        Ok(())
    }
    fn push(&mut self, r: Record<K, V>) -> Result<()> {
        let encoded = crate::poison::guard(
            &self.poison,
            || self.sink.encode(&self.topic, &r),
            || {
                (
                    format!("sink codec of {}", self.topic),
                    format!(
                        "on record {}/{}@{}",
                        r.origin.topic, r.origin.partition, r.origin.offset
                    ),
                )
            },
        )?;
        self.output.send_encoded(&self.topic, encoded)
    }
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }
    fn commit(&mut self, _input_offset: i64) -> Result<()> {
        Ok(())
    }
    fn abort(&mut self) {}
    fn revoke(&mut self) {}
}
