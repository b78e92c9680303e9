//! Records flowing through a pipeline, and the task (input partition) they come from.

use std::sync::Arc;

/// The wall clock in ms since the epoch, as record timestamps count it (0 before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One record header: a name and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value (`None` for a null header).
    pub value: Option<Vec<u8>>,
}

/// Where a record was read: input topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Input topic.
    pub topic: Arc<str>,
    /// Input partition.
    pub partition: i32,
    /// Offset in the input partition.
    pub offset: i64,
}

/// A record: typed key and value, timestamp, headers, and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key (`None` for a record without a key).
    pub key: Option<K>,
    /// The value.
    pub value: V,
    /// Timestamp in milliseconds since the epoch, if the record had one.
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// The input record this one derives from.
    pub origin: Origin,
}

impl<K, V> Record<K, V> {
    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
            origin: self.origin,
        }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: Option<K2>) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
            origin: self.origin,
        }
    }
}

/// A task: one input partition with its own operator instances and state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// Input topic.
    pub topic: Arc<str>,
    /// Input partition.
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}
