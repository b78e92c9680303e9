//! The reader service of global tables: one materialisation per (brokers, application,
//! topic, types) in the process, each with a reader thread that consumes the table topic
//! `read_committed` from the beginning, and a registry to find them.

use super::{lock, Rows};
use crate::codec::Codec;
use crate::config::Config;
use crate::error::{Action, Error, KafkaOp, Result};
use crate::observability::metric;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// How long the reader waits for a record before it looks at its progress and its users.
const POLL: Duration = Duration::from_millis(100);

/// The materialisations of topic tables in this process, as table topic names (sorted; a
/// topic appears once per application and types joining against it). A reader thread runs
/// for each; it stops when the table has been unused for its [`Table::keep_alive`](super::Table::keep_alive).
///
/// ```
/// assert!(exactly_framework::table::live_tables().is_empty()); // no worker in this process
/// ```
pub fn live_tables() -> Vec<String> {
    let mut topics: Vec<String> = lock(registry()).keys().map(|k| k.topic.clone()).collect();
    topics.sort();
    topics
}

/// Identifies one materialisation in the process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RegistryKey {
    brokers: String,
    application_id: String,
    topic: String,
    types: (TypeId, TypeId),
}

type Registry = Mutex<HashMap<RegistryKey, Arc<dyn Any + Send + Sync>>>;

/// The process-wide materialisations. Lock order: the registry, then a table's status.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// A topic table materialised in this process.
pub(crate) struct Materialised<K, T> {
    topic: String,
    pub(crate) rows: Rows<K, T>,
    status: Mutex<Status>,
    /// Signals `loaded` and `failure`.
    changed: Condvar,
    /// `status.failure` is set (read on every record without a lock).
    failed: AtomicBool,
}

struct Status {
    /// Join tasks holding a [`Lease`].
    users: usize,
    /// When `users` last dropped to zero.
    idle_since: Instant,
    /// The bootstrap is complete.
    loaded: bool,
    /// Why the reader stopped, if it failed.
    failure: Option<Failure>,
}

/// Why a table reader stopped (kept to be reported by every task that uses the table).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Decode {
        part: &'static str,
        partition: i32,
        offset: i64,
        message: String,
    },
    Reader(String),
}

impl Failure {
    fn to_error(&self, topic: &str, operator: &str) -> Error {
        match self {
            Failure::Decode {
                part,
                partition,
                offset,
                message,
            } => Error::Decode {
                part,
                topic: topic.to_string(),
                partition: *partition,
                offset: *offset,
                message: format!(
                    "{message} (a record of the table of `{operator}`; write a valid value or a tombstone for its key)"
                ),
            },
            Failure::Reader(message) => Error::Operator {
                operator: operator.to_string(),
                message: format!("the reader of the table topic `{topic}` stopped: {message}"),
            },
        }
    }
}

/// A join task's hold on a materialisation; dropping the last one starts the keep-alive.
pub(crate) struct Lease<K, T> {
    pub(crate) table: Arc<Materialised<K, T>>,
}

impl<K, T> Lease<K, T> {
    /// The reader's failure as this operator's error.
    pub(crate) fn check(&self, operator: &str) -> Result<()> {
        if !self.table.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        match &lock(&self.table.status).failure {
            Some(f) => Err(f.to_error(&self.table.topic, operator)),
            None => Ok(()),
        }
    }

    /// Waits until the bootstrap is complete, the reader failed, or `deadline` passed.
    fn wait_loaded(&self, deadline: Duration, operator: &str) -> Result<()> {
        let give_up = Instant::now() + deadline;
        let mut status = lock(&self.table.status);
        loop {
            if let Some(f) = &status.failure {
                return Err(f.to_error(&self.table.topic, operator));
            }
            if status.loaded {
                return Ok(());
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(Error::State {
                    op: "table bootstrap",
                    message: format!(
                        "the table topic `{}` of join `{operator}` was not read to its end within {deadline:?} \
                         (is a transaction left open on it?)",
                        self.table.topic
                    ),
                });
            }
            status = self
                .table
                .changed
                .wait_timeout(status, give_up - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl<K, T> Drop for Lease<K, T> {
    fn drop(&mut self) {
        let mut status = lock(&self.table.status);
        status.users = status.users.saturating_sub(1);
        if status.users == 0 {
            status.idle_since = Instant::now();
        }
    }
}

/// Finds or starts the materialisation of `topic` for this worker's process and waits
/// until it is loaded.
pub(crate) fn acquire<K, T>(
    config: &Config,
    topic: &str,
    key: &Arc<dyn Codec<K>>,
    value: &Arc<dyn Codec<T>>,
    keep_alive: Duration,
    operator: &str,
) -> Result<Lease<K, T>>
where
    K: Eq + Hash + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    let registry_key = RegistryKey {
        brokers: config.brokers.clone(),
        application_id: config.application_id.clone(),
        topic: topic.to_string(),
        types: (TypeId::of::<K>(), TypeId::of::<T>()),
    };
    let table = {
        let mut registry = lock(registry());
        let found = registry
            .get(&registry_key)
            .cloned()
            .and_then(|t| t.downcast::<Materialised<K, T>>().ok());
        match found {
            Some(table) => {
                lock(&table.status).users += 1;
                table
            }
            None => {
                let table = start_reader(
                    config,
                    topic,
                    key.clone(),
                    value.clone(),
                    keep_alive,
                    registry_key.clone(),
                )?;
                registry.insert(registry_key, table.clone());
                table
            }
        }
    };
    let lease = Lease { table };
    let deadline =
        Duration::from_millis(2 * config.transaction_timeout_ms) + Duration::from_secs(60);
    lease.wait_loaded(deadline, operator)?;
    Ok(lease)
}

/// Creates the table's consumer, checks the topic, takes the bootstrap's high watermarks,
/// and starts the reader thread. The new table has one user.
fn start_reader<K, T>(
    config: &Config,
    topic: &str,
    key: Arc<dyn Codec<K>>,
    value: Arc<dyn Codec<T>>,
    keep_alive: Duration,
    registry_key: RegistryKey,
) -> Result<Arc<Materialised<K, T>>>
where
    K: Eq + Hash + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    let mut client = config.client_config(true)?;
    client
        // Needed by librdkafka, never joined: the table reader assigns itself partitions
        // and commits nothing.
        .set(
            "group.id",
            format!("{}-table-{topic}", config.application_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
    let timeout = Duration::from_secs(10);
    let partitions =
        crate::topics::topic_partitions(consumer.client(), &config.brokers, topic, timeout)?;
    // The bootstrap reads every partition up to its high watermark of this moment.
    let mut behind = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
        if high > low {
            behind.insert(p, high);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
    let table = Arc::new(Materialised {
        topic: topic.to_string(),
        rows: Rows(RwLock::new(HashMap::new())),
        status: Mutex::new(Status {
            users: 1,
            idle_since: Instant::now(),
            loaded: false,
            failure: None,
        }),
        changed: Condvar::new(),
        failed: AtomicBool::new(false),
    });
    tracing::info!(
        topic,
        partitions = tpl.count(),
        to_read = behind.len(),
        "table reader starting"
    );
    let reader = Reader {
        consumer,
        table: table.clone(),
        key,
        value,
        behind,
        registry_key,
        keep_alive,
        started: Instant::now(),
        skipped: 0,
        unresolved: Unresolved::default(),
    };
    std::thread::Builder::new()
        .name("exactly-table".into())
        .spawn(move || reader.run())
        .map_err(|e| Error::Worker(format!("cannot start the table reader thread: {e}")))?;
    Ok(table)
}

/// What one table record did.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Put,
    Deleted,
    /// No key: nothing to look it up by.
    Skipped,
}

/// Applies one table record to `rows`: a value sets the key's row, a null deletes it.
fn apply_record<K: Eq + Hash + 'static, T: 'static>(
    rows: &Rows<K, T>,
    key_codec: &dyn Codec<K>,
    value_codec: &dyn Codec<T>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    partition: i32,
    offset: i64,
) -> std::result::Result<Applied, Failure> {
    let Some(key) = key else {
        return Ok(Applied::Skipped);
    };
    let failure = |part, message| Failure::Decode {
        part,
        partition,
        offset,
        message,
    };
    let key = key_codec.decode(Some(key)).map_err(|m| failure("key", m))?;
    match value {
        None => {
            rows.delete(&key);
            Ok(Applied::Deleted)
        }
        Some(bytes) => {
            let value = value_codec
                .decode(Some(bytes))
                .map_err(|m| failure("value", m))?;
            rows.put(key, value);
            Ok(Applied::Put)
        }
    }
}

/// Undecodable table records met during the bootstrap, by raw key: each is forgiven when a
/// later record of the same key replaces it (the repair of a bad record: compaction removes
/// it only later), and fatal if any is left when the bootstrap ends.
#[derive(Debug, Default)]
struct Unresolved(HashMap<Vec<u8>, Failure>);

impl Unresolved {
    /// A record of `key` applied: it replaces an earlier bad one.
    fn replaced(&mut self, key: Option<&[u8]>) {
        if let (false, Some(k)) = (self.0.is_empty(), key) {
            self.0.remove(k);
        }
    }

    /// A record of `key` did not decode.
    fn bad(&mut self, key: Option<&[u8]>, failure: Failure) {
        self.0.insert(key.unwrap_or_default().to_vec(), failure);
    }

    /// The first bad record left (by partition and offset).
    fn first(&self) -> Option<&Failure> {
        self.0.values().min_by_key(|f| match f {
            Failure::Decode {
                partition, offset, ..
            } => (*partition, *offset),
            Failure::Reader(_) => (i32::MIN, i64::MIN),
        })
    }
}

/// The reader thread of one materialisation.
struct Reader<K, T> {
    consumer: BaseConsumer,
    table: Arc<Materialised<K, T>>,
    key: Arc<dyn Codec<K>>,
    value: Arc<dyn Codec<T>>,
    /// Partitions not yet read up to their bootstrap high watermark.
    behind: HashMap<i32, i64>,
    registry_key: RegistryKey,
    keep_alive: Duration,
    started: Instant,
    /// Records without a key, skipped.
    skipped: u64,
    /// Bad records of the bootstrap not yet replaced.
    unresolved: Unresolved,
}

impl<K, T> Reader<K, T>
where
    K: Eq + Hash + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    fn run(mut self) {
        let topic = self.table.topic.clone();
        let _span = tracing::info_span!("table", topic = %topic).entered();
        let mut since_check = 0u32;
        let mut last_warning: Option<Instant> = None;
        let mut last_gauge = Instant::now();
        if self.behind.is_empty() {
            self.loaded();
        }
        loop {
            if self.should_stop() {
                return;
            }
            let mut check = false;
            match self.consumer.poll(POLL) {
                None => check = true,
                Some(Ok(m)) => {
                    let (partition, offset) = (m.partition(), m.offset());
                    let applied = apply_record(
                        &self.table.rows,
                        &*self.key,
                        &*self.value,
                        m.key(),
                        m.payload(),
                        partition,
                        offset,
                    );
                    match applied {
                        Ok(Applied::Skipped) => {
                            self.skipped += 1;
                            metrics::counter!(metric::TABLE_RECORDS_SKIPPED, "topic" => topic.clone())
                                .increment(1);
                            if self.skipped == 1 {
                                tracing::warn!(
                                    partition,
                                    offset,
                                    "table record without a key skipped (is the topic compacted?)"
                                );
                            }
                        }
                        Ok(_) => self.unresolved.replaced(m.key()),
                        Err(f) if !self.behind.is_empty() => {
                            tracing::warn!(
                                ?f,
                                "undecodable table record: fatal at the end of the bootstrap unless a later record of its key replaces it"
                            );
                            self.unresolved.bad(m.key(), f);
                        }
                        Err(f) => return self.fail(f),
                    }
                    since_check += 1;
                    check = since_check >= 1_000
                        || self
                            .behind
                            .get(&partition)
                            .is_some_and(|hw| offset + 1 >= *hw);
                }
                Some(Err(e)) => {
                    let err = Error::kafka(KafkaOp::Poll, e);
                    if err.action() == Action::Fatal {
                        return self.fail(Failure::Reader(err.to_string()));
                    }
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(%err, "table reader error (retrying)");
                        last_warning = Some(Instant::now());
                    }
                }
            }
            if check {
                since_check = 0;
                if !self.behind.is_empty() {
                    if let Err(f) = self.check_progress() {
                        return self.fail(f);
                    }
                }
                if last_gauge.elapsed() >= Duration::from_secs(1) {
                    self.publish_rows(self.table.rows.len());
                    last_gauge = Instant::now();
                }
            }
        }
    }

    /// Drops the partitions whose position reached their bootstrap high watermark; the
    /// table is loaded when none is left, unless a bad record was left unreplaced. Under
    /// `read_committed` the position passes control records and aborted transactions,
    /// which are never delivered.
    fn check_progress(&mut self) -> std::result::Result<(), Failure> {
        let Ok(positions) = self.consumer.position() else {
            return Ok(());
        };
        let topic = &self.table.topic;
        self.behind.retain(|p, hw| {
            let position = positions.find_partition(topic, *p).map(|e| e.offset());
            !matches!(position, Some(Offset::Offset(o)) if o >= *hw)
        });
        if self.behind.is_empty() {
            if let Some(f) = self.unresolved.first() {
                return Err(f.clone());
            }
            self.loaded();
        }
        Ok(())
    }

    fn loaded(&self) {
        let rows = self.table.rows.len();
        lock(&self.table.status).loaded = true;
        self.table.changed.notify_all();
        self.publish_rows(rows);
        tracing::info!(rows, took = ?self.started.elapsed(), skipped = self.skipped, "table loaded");
    }

    /// The gauge `exactly_table_rows{topic}`.
    fn publish_rows(&self, rows: usize) {
        metrics::gauge!(metric::TABLE_ROWS, "topic" => self.table.topic.clone()).set(rows as f64);
    }

    /// Whether the table has been unused for its keep-alive; if so it is unregistered (no
    /// task can find it any more) and the reader stops.
    fn should_stop(&self) -> bool {
        {
            let status = lock(&self.table.status);
            if status.users > 0 || status.idle_since.elapsed() < self.keep_alive {
                return false;
            }
        }
        let mut registry = lock(registry());
        if lock(&self.table.status).users > 0 {
            return false;
        }
        self.unregister(&mut registry);
        self.publish_rows(0);
        tracing::info!(rows = self.table.rows.len(), "table unused: reader stopped");
        true
    }

    fn unregister(&self, registry: &mut HashMap<RegistryKey, Arc<dyn Any + Send + Sync>>) {
        let ours = registry.get(&self.registry_key).is_some_and(|t| {
            std::ptr::eq(
                Arc::as_ptr(t) as *const (),
                Arc::as_ptr(&self.table) as *const (),
            )
        });
        if ours {
            registry.remove(&self.registry_key);
        }
    }

    /// Records the failure for every user, and stops. The table is unregistered first, so a
    /// task assigned after the failure is reported starts a new reader.
    fn fail(self, failure: Failure) {
        tracing::error!(
            ?failure,
            "table reader stopped: every join task using this table fails at its next record"
        );
        self.unregister(&mut lock(registry()));
        self.publish_rows(0);
        lock(&self.table.status).failure = Some(failure);
        self.table.failed.store(true, Ordering::Release);
        self.table.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serde;

    #[test]
    fn table_records_set_and_delete_rows_and_bad_ones_are_named() {
        let rows: Rows<String, u32> = Rows(RwLock::new(HashMap::new()));
        let (k, v) = (Serde::string(), Serde::json::<u32>());
        let apply = |key: Option<&[u8]>, value: Option<&[u8]>, offset| {
            apply_record(&rows, &k, &v, key, value, 2, offset)
        };
        assert_eq!(apply(Some(b"a"), Some(b"1"), 0), Ok(Applied::Put));
        assert_eq!(apply(Some(b"b"), Some(b"2"), 1), Ok(Applied::Put));
        assert_eq!(apply(Some(b"a"), Some(b"3"), 2), Ok(Applied::Put));
        assert_eq!(apply(Some(b"b"), None, 3), Ok(Applied::Deleted));
        assert_eq!(apply(None, Some(b"4"), 4), Ok(Applied::Skipped));
        assert_eq!(rows.get(&"a".to_string()).as_deref(), Some(&3));
        assert_eq!(rows.get(&"b".to_string()), None);
        assert_eq!(rows.len(), 1);

        let failure = apply(Some(b"c"), Some(b"not json"), 5).unwrap_err();
        let err = failure.to_error("customers", "enrich");
        assert!(
            matches!(
                err,
                Error::Decode {
                    partition: 2,
                    offset: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot decode the value of record customers/2@5: invalid JSON")
                && msg.contains("of `enrich`"),
            "{msg}"
        );
        let failure = apply(Some(&[0xff]), Some(b"1"), 6).unwrap_err();
        assert!(matches!(
            failure,
            Failure::Decode {
                part: "key",
                offset: 6,
                ..
            }
        ));
        assert_eq!(rows.len(), 1, "a bad record changes nothing");
    }

    #[test]
    fn a_bad_table_record_is_forgiven_only_when_its_key_is_written_again() {
        let bad = |partition, offset| Failure::Decode {
            part: "value",
            partition,
            offset,
            message: "invalid JSON".into(),
        };
        let mut u = Unresolved::default();
        u.bad(Some(b"a"), bad(0, 7));
        u.bad(Some(b"b"), bad(1, 3));
        u.replaced(Some(b"c"));
        u.replaced(None);
        assert_eq!(
            u.first(),
            Some(&bad(0, 7)),
            "the first by partition and offset"
        );
        u.replaced(Some(b"a"));
        assert_eq!(u.first(), Some(&bad(1, 3)));
        u.bad(Some(b"b"), bad(1, 9));
        assert_eq!(
            u.first(),
            Some(&bad(1, 9)),
            "a later bad record of the key replaces it"
        );
        u.replaced(Some(b"b"));
        assert_eq!(u.first(), None);
    }
}
