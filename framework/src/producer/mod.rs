//! The worker-wide producer: every record a worker writes — output, side outputs,
//! repartition hops, changelogs — goes through one `WorkerProducer`.
//!
//! Under `ExactlyOnce` it is transactional, and every record sent belongs to the worker's
//! open transaction, visible to `read_committed` readers only when the commit cycle commits
//! it. It counts delivery failures (at-least-once must not commit offsets past one) and,
//! for the partitions a caller asks it to `track`, the offset after
//! the last delivered record — as Kafka Streams' `RecordCollector.offsets()` — which the
//! state layer uses for its changelog checkpoints.

mod sink;

pub(crate) use sink::Encoded;

/// Where a task's records go: the worker's transactional producer, or the test driver's
/// in-memory topics.
pub(crate) trait Output: Send + Sync {
    /// Sends one encoded record to `topic` (resolved name).
    fn send_encoded(&self, topic: &str, e: Encoded<'_>) -> Result<()>;
}

impl Output for WorkerProducer {
    fn send_encoded(&self, topic: &str, e: Encoded<'_>) -> Result<()> {
        WorkerProducer::send_encoded(self, topic, e)
    }
}
pub use sink::{Partitioning, Sink};

use crate::error::{Error, KafkaOp, Result};
use crate::observability::Stats;
use crate::record::now_ms;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// A partition whose delivered offsets are tracked (see [`WorkerProducer::track`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tracked(usize);

/// Untracked sends carry this delivery opaque: nothing to update on delivery.
const UNTRACKED: usize = 0;

/// Delivery reports: failures, and the last delivered offset of tracked partitions.
pub(crate) struct DeliveryContext {
    pub(crate) delivery_failures: AtomicU64,
    /// The last failed delivery: its error and topic.
    last_failure: Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// The last error the client reported (a failed TLS handshake, an authentication
    /// failure), for errors that would otherwise say only "transport failure".
    last_client_error: Mutex<Option<String>>,
    /// Slot `i` (from 1) holds the highest delivered offset of tracked partition `i`, or -1.
    delivered: RwLock<Vec<Arc<AtomicI64>>>,
}

impl DeliveryContext {
    pub(crate) fn new() -> Self {
        DeliveryContext {
            delivery_failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            last_client_error: Mutex::new(None),
            delivered: RwLock::new(vec![Arc::new(AtomicI64::new(-1))]),
        }
    }

    /// The error to report for failed deliveries: [`Error::NotAuthorized`] naming the topic
    /// when the last one was refused by the authorizer, otherwise a produce failure that
    /// aborts the cycle (whatever the individual reports said).
    pub(crate) fn last_failure(&self) -> Error {
        let last = self.last_failure.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((code, topic)) = last.as_ref() {
            let e = Error::kafka(KafkaOp::Produce, KafkaError::MessageProduction(*code));
            if matches!(e, Error::NotAuthorized { .. }) {
                return e.naming("TOPIC", topic.clone());
            }
        }
        Error::kafka(
            KafkaOp::Produce,
            KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
        )
    }

    /// The last error the client reported, if any.
    pub(crate) fn last_client_error(&self) -> Option<String> {
        self.last_client_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(target: "librdkafka", %error, "{reason}");
        // "1/1 brokers are down" follows the error that says why.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        *self
            .last_client_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        match result {
            Err((e, m)) => {
                use rdkafka::message::Message;
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((code, m.topic().to_string()));
                self.delivery_failures.fetch_add(1, Ordering::Relaxed);
                if matches!(
                    code,
                    RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
                ) {
                    // Purged by an abort, which logs once and replays the cycle: a line
                    // per record would bury the log (thousands per abort).
                    tracing::debug!(error = %e, topic = m.topic(), "an output record was purged by an abort");
                } else {
                    tracing::warn!(error = %e, topic = m.topic(), "an output record was not delivered");
                }
            }
            Ok(m) if slot != UNTRACKED => {
                use rdkafka::message::Message;
                let delivered = self.delivered.read().unwrap_or_else(|p| p.into_inner());
                if let Some(last) = delivered.get(slot) {
                    last.fetch_max(m.offset(), Ordering::Relaxed);
                }
            }
            Ok(_) => {}
        }
    }
}

/// A topic whose broker deletes records older than `retention_ms`: a record written with
/// an older timestamp is deleted soon after it is written, which deserves a warning.
struct Retention {
    topic: String,
    retention_ms: i64,
    warned: AtomicBool,
}

/// The worker's producer, shared by every task.
pub(crate) struct WorkerProducer {
    pub(crate) producer: ThreadedProducer<DeliveryContext>,
    pub(crate) stats: Arc<Stats>,
    /// The tracked partitions, by slot.
    tracked: RwLock<Vec<(String, i32)>>,
    /// Watched topics with time retention.
    retention: RwLock<Vec<Retention>>,
    /// A timestamp below which a record may be past some watched topic's retention (ms
    /// since the epoch; `i64::MIN`: nothing watched). Refreshed by
    /// [`refresh_retention_floor`](Self::refresh_retention_floor): one comparison per
    /// record.
    retention_floor: AtomicI64,
}

impl WorkerProducer {
    pub(crate) fn new(producer: ThreadedProducer<DeliveryContext>, stats: Arc<Stats>) -> Self {
        WorkerProducer {
            producer,
            stats,
            tracked: RwLock::new(vec![(String::new(), -1)]),
            retention: RwLock::new(Vec::new()),
            retention_floor: AtomicI64::new(i64::MIN),
        }
    }

    /// Warns (once per topic) when records older than `topic`'s `retention_ms` are written
    /// to it.
    pub(crate) fn watch_retention(&self, topic: &str, retention_ms: i64) {
        self.retention
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Retention {
                topic: topic.to_string(),
                retention_ms,
                warned: AtomicBool::new(false),
            });
        self.refresh_retention_floor();
    }

    /// Moves the retention floor to now (the worker calls it after each commit).
    pub(crate) fn refresh_retention_floor(&self) {
        let watched = self.retention.read().unwrap_or_else(|p| p.into_inner());
        if let Some(min) = watched.iter().map(|r| r.retention_ms).min() {
            self.retention_floor
                .store((now_ms() as i64).saturating_sub(min), Ordering::Relaxed);
        }
    }

    /// The slow path of a record below the floor: is it past its topic's retention?
    fn check_retention(&self, topic: &str, timestamp: i64) {
        let watched = self.retention.read().unwrap_or_else(|p| p.into_inner());
        let Some(r) = watched.iter().find(|r| r.topic == topic) else {
            return;
        };
        let age_ms = (now_ms() as i64).saturating_sub(timestamp);
        if age_ms <= r.retention_ms {
            return;
        }
        self.stats.past_retention();
        if !r.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                topic,
                timestamp,
                age_s = age_ms / 1000,
                retention_ms = r.retention_ms,
                "records older than the topic's retention.ms are written to it: the broker deletes them soon after \
                 (their timestamp, not their write time, counts). Raise it (kafka-configs.sh --alter --entity-type topics \
                 --entity-name {topic} --add-config retention.ms=...) or give the records newer timestamps. \
                 Warned once per topic; exactly_records_past_retention_total counts them"
            );
        }
    }

    /// Starts tracking the delivered offsets of `topic`/`partition` (idempotent).
    pub(crate) fn track(&self, topic: &str, partition: i32) -> Tracked {
        let mut tracked = self.tracked.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = tracked
            .iter()
            .position(|(t, p)| t == topic && *p == partition)
        {
            return Tracked(i);
        }
        tracked.push((topic.to_string(), partition));
        let mut delivered = self
            .producer
            .context()
            .delivered
            .write()
            .unwrap_or_else(|p| p.into_inner());
        delivered.push(Arc::new(AtomicI64::new(-1)));
        Tracked(tracked.len() - 1)
    }

    /// The offset after the last delivered record of a tracked partition, if any.
    pub(crate) fn delivered_end(&self, tracked: Tracked) -> Option<i64> {
        let delivered = self
            .producer
            .context()
            .delivered
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let last = delivered.get(tracked.0)?.load(Ordering::Relaxed);
        (last >= 0).then_some(last + 1)
    }

    /// Sends one record to `topic` (to `partition`, or by key), waiting while librdkafka's
    /// queue is full.
    ///
    /// # Errors
    /// [`Error::Kafka`] (`Produce`) when librdkafka refuses the record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: Option<i64>,
        headers: Option<OwnedHeaders>,
        tracked: Option<Tracked>,
    ) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, tracked.map_or(UNTRACKED, |t| t.0));
        record.key = key;
        record.payload = value;
        record.partition = partition;
        record.timestamp = timestamp;
        record.headers = headers;
        if let Some(ts) = timestamp {
            if ts < self.retention_floor.load(Ordering::Relaxed) {
                self.check_retention(topic, ts);
            }
        }
        enqueue(&self.producer, record)
            .map_err(|e| Error::kafka(KafkaOp::Produce, e).naming("TOPIC", topic))?;
        self.stats.records_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends an encoded record to `topic`.
    pub(crate) fn send_encoded(&self, topic: &str, e: Encoded<'_>) -> Result<()> {
        self.send(
            topic,
            e.partition,
            e.key.as_deref(),
            e.value.as_deref(),
            e.timestamp,
            e.headers,
            None,
        )
    }
}

/// Queues `record` on `producer`, waiting while librdkafka's queue is full (back-pressure:
/// the producer's thread drains deliveries meanwhile). The one copy of this loop: the
/// testkit's loader and the benches call it too.
///
/// # Errors
/// The error librdkafka refused the record with (other than a full queue).
pub fn enqueue<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> KafkaResult<()>
where
    C: ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
