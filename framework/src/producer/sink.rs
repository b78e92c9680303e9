//! Where records go: a topic with key and value serdes ([`Sink`]), and records encoded for
//! it.

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::topics::TopicName;
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use std::borrow::Cow;
use std::sync::Arc;

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
    pub(crate) topic: TopicName,
    pub(crate) key: Arc<dyn Codec<K>>,
    pub(crate) value: Arc<dyn Codec<V>>,
    pub(crate) partitioning: Partitioning,
}

impl<K, V> Sink<K, V> {
    /// Writes to `topic`, encoding keys and values with the given serdes.
    pub fn topic(topic: impl Into<String>, key: impl Codec<K>, value: impl Codec<V>) -> Self {
        Sink {
            topic: TopicName::External(topic.into()),
            key: Arc::new(key),
            value: Arc::new(value),
            partitioning: Partitioning::ByKey,
        }
    }

    /// The topic's name as given (internal topics without the application id prefix).
    pub fn topic_name(&self) -> &str {
        self.topic.as_given()
    }

    /// Chooses the output partitioning.
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }
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
