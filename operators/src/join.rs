//! `join_table`: a stream–table join against a *global table* materialised from a compacted
//! topic.
//!
//! ```
//! use exactly_framework::{Pipeline, Serde};
//! use exactly_operators::{StreamExt, Table};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Customer { name: String }
//!
//! // Orders keyed by customer id; customers in a compacted topic keyed by customer id.
//! let pipeline = Pipeline::from_topic_with_key("orders", Serde::string(), Serde::string())
//!     .join_table(
//!         "customers",
//!         Table::topic("customers", Serde::string(), Serde::json::<Customer>()),
//!         |order: String, customer: Option<&Customer>| {
//!             customer.map(|c| format!("{order} for {}", c.name)) // inner join: None drops
//!         },
//!     )
//!     .to_topic("orders-enriched", Serde::string(), Serde::string());
//! assert_eq!(pipeline.output_topic(), "orders-enriched");
//! ```
//!
//! # The table is global
//!
//! Like Kafka Streams' `GlobalKTable`, every worker process materialises **all** partitions
//! of the table topic, whatever input partitions it owns. So the stream needs no
//! co-partitioning with the table: re-key it with `map_key` (no repartition) to join on
//! another field.
//!
//! - **One materialisation per process**, shared by every task (input partition) of every
//!   worker of the process that joins against the same table: the key is (brokers,
//!   application id, table topic, key and value types). The first user's codecs decode it.
//! - **Where it lives**: in memory, a `HashMap<K, Arc<T>>` behind a read–write lock — about
//!   the size of the decoded keys and values, plus some 40 bytes per row (`Arc` header,
//!   map slot). The table is small enough to replicate on every worker, or it is not a
//!   global table. Nothing is written to the state directory: a restart reloads it.
//! - **A reader thread** (`exactly-table`) per materialisation consumes the table topic
//!   with its own consumer: `read_committed` (records of aborted transactions never reach
//!   the table), from the beginning, assigned every partition at start (partitions added
//!   later are not read until the process restarts). A null value (a tombstone) deletes
//!   the key; a record without a key is skipped with a warning and counted in
//!   `exactly_table_records_skipped_total{topic}` (a compacted topic cannot hold one). The
//!   table topic is not part of the consumer group, and no offset of it is ever committed.
//!   The gauge `exactly_table_rows{topic}` follows the row count.
//! - **Bootstrap**: the first task that needs the table (in `on_assign`, when the task
//!   starts: before its first record, and outside any transaction — the worker commits its
//!   open cycle before it starts a task) takes the high watermarks of every table partition
//!   and waits until the reader has read up to them. A fresh worker therefore never joins
//!   against a half-loaded table, and a load longer than `transaction_timeout_ms` costs no
//!   transaction. Later tasks of the process find it loaded. The wait is bounded by twice
//!   `transaction_timeout_ms` plus a minute (an open transaction on the table topic holds
//!   `read_committed` readers back); past it the task's start fails with a state error, its
//!   first record is delivered again and the start is tried again (the worker stops after
//!   `max_retries` such failures in a row). The worker does not poll its consumer
//!   meanwhile, so a table that takes longer than `max_poll_interval_ms` to load costs the
//!   worker its partitions.
//! - **Lifetime**: the reader stops, and the rows are freed, when no task has used the table
//!   for [`Table::keep_alive`] (default 30 s), so that a rebalance which revokes and
//!   reassigns every partition (eager assignment) does not reload it. [`live_tables`] lists
//!   the materialisations of the process.
//!
//! # What a stream record meets
//!
//! After the bootstrap, updates are applied as the reader reads them, concurrently with the
//! stream: which version of a row a stream record meets depends on timing, as with a
//! `GlobalKTable` (there is no time alignment between the stream and the table). A replay
//! after an aborted cycle may meet a newer version than the aborted attempt did. What stays
//! exactly-once is the stream side: each stream record's join output is written in the
//! transaction that commits its input offset, so `read_committed` readers see it once.
//!
//! # Errors
//!
//! - The table topic is missing: [`Error::MissingTopic`] from `on_assign`; the worker stops.
//! - A table record whose key or value does not decode: [`Error::Decode`] naming the table
//!   topic, partition and offset. Nothing is skipped silently. Met during the bootstrap, it
//!   is fatal when the bootstrap ends unless a later record of the same key replaced it —
//!   so writing a valid value (or a tombstone) for that key repairs the table at the next
//!   start, before compaction removes the bad record. Met afterwards, the reader stops and
//!   every join task of the process fails at its next record, so no stream record meets a
//!   table that lacks an update.
//! - Under the test harness (no Kafka: [`Context::config`] is `None`) a topic table is an
//!   [`Error::Config`]; give the operator a [`Table::in_memory`] or a [`MemoryTable`].

use exactly_framework::{
    Action, Codec, Collector, Config, Context, Error, KafkaOp, Operator, Record, Result,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard,
    RwLockWriteGuard,
};
use std::time::{Duration, Instant};

/// How long an unused materialisation lives on by default (see [`Table::keep_alive`]).
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long the reader waits for a record before it looks at its progress and its users.
const POLL: Duration = Duration::from_millis(100);

/// The table side of a stream–table join: where its rows come from. See the
/// [module documentation](self) for how a topic table is materialised.
///
/// ```
/// use exactly_framework::Serde;
/// use exactly_operators::Table;
///
/// let from_kafka = Table::topic("customers", Serde::string(), Serde::string());
/// let in_memory = Table::in_memory([("c1".to_string(), "Ada".to_string())]);
/// assert_eq!(from_kafka.topic_name(), Some("customers"));
/// assert_eq!(in_memory.topic_name(), None);
/// ```
pub struct Table<K, T> {
    source: Source<K, T>,
    keep_alive: Duration,
}

enum Source<K, T> {
    Topic {
        topic: String,
        key: Arc<dyn Codec<K>>,
        value: Arc<dyn Codec<T>>,
    },
    Memory(MemoryTable<K, T>),
}

impl<K, T> Clone for Table<K, T> {
    fn clone(&self) -> Self {
        Table {
            source: match &self.source {
                Source::Topic { topic, key, value } => Source::Topic {
                    topic: topic.clone(),
                    key: key.clone(),
                    value: value.clone(),
                },
                Source::Memory(m) => Source::Memory(m.clone()),
            },
            keep_alive: self.keep_alive,
        }
    }
}

impl<K, T> std::fmt::Debug for Table<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Table");
        match &self.source {
            Source::Topic { topic, .. } => d.field("topic", topic),
            Source::Memory(m) => d.field("in_memory_rows", &m.rows.len()),
        };
        d.field("keep_alive", &self.keep_alive).finish()
    }
}

impl<K, T> Table<K, T>
where
    K: Eq + Hash + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    /// The table materialised from the compacted topic `topic`, whose keys decode with `key`
    /// and values with `value` (a null value is a tombstone and is not decoded).
    ///
    /// ```
    /// use exactly_framework::Serde;
    /// use exactly_operators::Table;
    ///
    /// let prices = Table::topic("prices", Serde::string(), Serde::json::<f64>());
    /// # let _ = prices;
    /// ```
    pub fn topic(topic: impl Into<String>, key: impl Codec<K>, value: impl Codec<T>) -> Self {
        Table {
            source: Source::Topic {
                topic: topic.into(),
                key: Arc::new(key),
                value: Arc::new(value),
            },
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }

    /// A table of fixed rows held in memory: reference data, or a topic table's stand-in
    /// under the test harness. Use a [`MemoryTable`] to change rows later.
    ///
    /// ```
    /// use exactly_operators::Table;
    ///
    /// let tiers = Table::in_memory([(1u32, "gold"), (2, "silver")]);
    /// # let _ = tiers;
    /// ```
    pub fn in_memory(rows: impl IntoIterator<Item = (K, T)>) -> Self {
        MemoryTable::new(rows).into()
    }

    /// How long a topic table's materialisation outlives the last join task of the process
    /// that used it (default 30 s): a task assigned within that time finds it loaded.
    /// `Duration::ZERO` stops the reader as soon as the last task leaves.
    ///
    /// ```
    /// use exactly_framework::Serde;
    /// use exactly_operators::Table;
    /// use std::time::Duration;
    ///
    /// let t = Table::topic("customers", Serde::string(), Serde::string())
    ///     .keep_alive(Duration::from_secs(120));
    /// # let _ = t;
    /// ```
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The table topic, or `None` for an in-memory table.
    ///
    /// ```
    /// use exactly_framework::Serde;
    /// use exactly_operators::Table;
    ///
    /// assert_eq!(Table::<String, String>::in_memory([]).topic_name(), None);
    /// ```
    pub fn topic_name(&self) -> Option<&str> {
        match &self.source {
            Source::Topic { topic, .. } => Some(topic),
            Source::Memory(_) => None,
        }
    }
}

impl<K, T> From<MemoryTable<K, T>> for Table<K, T> {
    fn from(table: MemoryTable<K, T>) -> Self {
        Table {
            source: Source::Memory(table),
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }
}

/// Rows held in memory that can change while joins read them: clones share the rows. Turn
/// it into a [`Table`] with `.into()` (or `Table::from`); `put` and `delete` act like a
/// table topic's updates and tombstones.
///
/// ```
/// use exactly_operators::{MemoryTable, Table};
///
/// let customers = MemoryTable::new([("c1".to_string(), "Ada".to_string())]);
/// let table: Table<String, String> = customers.clone().into();
/// customers.put("c2".to_string(), "Grace".to_string());
/// customers.delete(&"c1".to_string());
/// assert_eq!(customers.len(), 1);
/// # let _ = table;
/// ```
pub struct MemoryTable<K, T> {
    rows: Arc<Rows<K, T>>,
}

impl<K, T> Clone for MemoryTable<K, T> {
    fn clone(&self) -> Self {
        MemoryTable {
            rows: self.rows.clone(),
        }
    }
}

impl<K, T> MemoryTable<K, T>
where
    K: Eq + Hash,
{
    /// A table holding `rows` (a later row replaces an earlier one with the same key).
    ///
    /// ```
    /// use exactly_operators::MemoryTable;
    ///
    /// assert_eq!(MemoryTable::new([(1, "a"), (1, "b")]).get(&1).as_deref(), Some(&"b"));
    /// ```
    pub fn new(rows: impl IntoIterator<Item = (K, T)>) -> Self {
        let map = rows.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        MemoryTable {
            rows: Arc::new(Rows(RwLock::new(map))),
        }
    }

    /// Sets the row of `key` (an update on the table topic).
    ///
    /// ```
    /// use exactly_operators::MemoryTable;
    ///
    /// let t = MemoryTable::new([(1, "a")]);
    /// t.put(1, "b");
    /// assert_eq!(t.get(&1).as_deref(), Some(&"b"));
    /// ```
    pub fn put(&self, key: K, value: T) {
        self.rows.put(key, value);
    }

    /// Removes the row of `key` (a tombstone); returns whether there was one.
    ///
    /// ```
    /// use exactly_operators::MemoryTable;
    ///
    /// let t = MemoryTable::new([(1, "a")]);
    /// assert!(t.delete(&1));
    /// assert!(t.is_empty());
    /// ```
    pub fn delete(&self, key: &K) -> bool {
        self.rows.delete(key)
    }

    /// The row of `key`.
    ///
    /// ```
    /// use exactly_operators::MemoryTable;
    ///
    /// assert_eq!(MemoryTable::new([(1, "a")]).get(&2), None);
    /// ```
    pub fn get(&self, key: &K) -> Option<Arc<T>> {
        self.rows.get(key)
    }

    /// The number of rows.
    ///
    /// ```
    /// use exactly_operators::MemoryTable;
    ///
    /// assert_eq!(MemoryTable::new([(1, "a"), (2, "b")]).len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    ///
    /// ```
    /// use exactly_operators::MemoryTable;
    ///
    /// assert!(MemoryTable::<u8, u8>::new([]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rows of a table, shared between its writer and the join tasks.
struct Rows<K, T>(RwLock<HashMap<K, Arc<T>>>);

impl<K, T> Rows<K, T> {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, Arc<T>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, Arc<T>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
    fn len(&self) -> usize {
        self.read().len()
    }
}

impl<K: Eq + Hash, T> Rows<K, T> {
    /// The row of `key`; the lock is released before the joiner runs.
    fn get(&self, key: &K) -> Option<Arc<T>> {
        self.read().get(key).cloned()
    }
    fn put(&self, key: K, value: T) {
        self.write().insert(key, Arc::new(value));
    }
    fn delete(&self, key: &K) -> bool {
        self.write().remove(key).is_some()
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Joins each record with the row of a [`Table`] under the record's key:
/// `joiner(value, row)` gives the output value, or `None` to drop the record. An inner join
/// returns `None` when the row is missing; a left join always returns `Some`. Records
/// without a key meet no row. Key, timestamp and headers are kept. See the
/// [module documentation](self) for the table's semantics; chain it with
/// [`StreamExt::join_table`](crate::StreamExt::join_table).
///
/// ```
/// use exactly_framework::testing::Harness;
/// use exactly_operators::{Table, TableJoin};
/// use std::sync::Arc;
///
/// let table = Table::in_memory([("c1".to_string(), "Ada".to_string())]);
/// let left = |order: &str, name: Option<&String>| {
///     Some(format!("{order}:{}", name.map_or("?", |n| n.as_str())))
/// };
/// let mut h = Harness::new(TableJoin::new(table, Arc::new(left)));
/// h.push(Some("c1".to_string()), "o1").unwrap();
/// h.push(Some("c2".to_string()), "o2").unwrap();
/// assert_eq!(h.values(), ["o1:Ada", "o2:?"]);
/// ```
pub struct TableJoin<K, T, F> {
    table: Table<K, T>,
    joiner: Arc<F>,
    rows: Option<Handle<K, T>>,
}

/// What a join task holds once assigned: the rows it reads.
enum Handle<K, T> {
    Memory(Arc<Rows<K, T>>),
    Topic(Lease<K, T>),
}

impl<K, T, F> TableJoin<K, T, F> {
    /// A join of the stream against `table` with `joiner` (shared by the tasks).
    ///
    /// ```
    /// use exactly_operators::{Table, TableJoin};
    /// use std::sync::Arc;
    ///
    /// let inner = |v: u32, row: Option<&u32>| row.map(|r| v * r);
    /// let join = TableJoin::new(Table::in_memory([(1u8, 10u32)]), Arc::new(inner));
    /// # let _ = join;
    /// ```
    pub fn new(table: Table<K, T>, joiner: Arc<F>) -> Self {
        TableJoin {
            table,
            joiner,
            rows: None,
        }
    }
}

impl<K, V, T, O, F> Operator<K, V> for TableJoin<K, T, F>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: 'static,
    T: Send + Sync + 'static,
    O: Send + 'static,
    F: Fn(V, Option<&T>) -> Option<O> + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = O;

    /// Attaches the task to the table: a topic table is materialised (or found loaded) in
    /// this process before the task's first record.
    ///
    /// # Errors
    /// [`Error::MissingTopic`] for a missing table topic; [`Error::Decode`] for a table
    /// record that does not decode; [`Error::State`] when the table cannot be read to its
    /// end in time; [`Error::Config`] for a topic table under the test harness.
    fn on_assign(&mut self, ctx: &mut Context) -> Result<()> {
        let handle = match &self.table.source {
            Source::Memory(m) => Handle::Memory(m.rows.clone()),
            Source::Topic { topic, key, value } => {
                let Some(config) = ctx.config() else {
                    return Err(Error::config(
                        "table",
                        format!(
                            "join `{}` reads its table from the topic `{topic}`, and the test \
                             harness has no Kafka: give it a Table::in_memory(rows) or a MemoryTable",
                            ctx.operator()
                        ),
                    ));
                };
                let lease = acquire(
                    config,
                    topic,
                    key,
                    value,
                    self.table.keep_alive,
                    ctx.operator(),
                )?;
                Handle::Topic(lease)
            }
        };
        self.rows = Some(handle);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut Context,
        out: &mut dyn Collector<K, O>,
    ) -> Result<()> {
        let rows = match &self.rows {
            Some(Handle::Memory(rows)) => rows,
            Some(Handle::Topic(lease)) => {
                lease.check(ctx.operator())?;
                &lease.table.rows
            }
            None => {
                return Err(Error::Operator {
                    operator: ctx.operator().to_string(),
                    message: "process called before on_assign".into(),
                })
            }
        };
        let row = record.key.as_ref().and_then(|k| rows.get(k));
        let Record {
            key,
            value,
            timestamp,
            headers,
            origin,
        } = record;
        match (self.joiner)(value, row.as_deref()) {
            Some(value) => out.collect(Record {
                key,
                value,
                timestamp,
                headers,
                origin,
            }),
            None => Ok(()),
        }
    }

    /// Lets go of the table (the last task of the process starts its keep-alive).
    fn on_revoke(&mut self, _: &mut Context) {
        self.rows = None;
    }
}

/// The materialisations of topic tables in this process, as table topic names (sorted; a
/// topic appears once per application and types joining against it). A reader thread runs
/// for each; it stops when the table has been unused for its [`Table::keep_alive`].
///
/// ```
/// assert!(exactly_operators::live_tables().is_empty()); // no worker in this process
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
struct Materialised<K, T> {
    topic: String,
    rows: Rows<K, T>,
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
                    "{message} (a record of the table of join `{operator}`; write a valid value or a tombstone for its key)"
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
struct Lease<K, T> {
    table: Arc<Materialised<K, T>>,
}

impl<K, T> Lease<K, T> {
    /// The reader's failure as this operator's error.
    fn check(&self, operator: &str) -> Result<()> {
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
fn acquire<K, T>(
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
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (k, v) in config.kafka.iter().chain(&config.kafka_consumer) {
        client.set(k, v);
    }
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
    let partitions = exactly_framework::topics::topic_partitions(
        consumer.client(),
        &config.brokers,
        topic,
        timeout,
    )?;
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
                            metrics::counter!("exactly_table_records_skipped_total", "topic" => topic.clone())
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
        metrics::gauge!("exactly_table_rows", "topic" => self.table.topic.clone()).set(rows as f64);
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
    use exactly_framework::testing::Harness;
    use exactly_framework::Serde;

    fn customers() -> MemoryTable<String, String> {
        MemoryTable::new([
            ("c1".to_string(), "Ada".to_string()),
            ("c2".to_string(), "Grace".to_string()),
        ])
    }

    fn key(k: &str) -> Option<String> {
        Some(k.to_string())
    }

    #[test]
    fn inner_join_drops_records_without_a_row() {
        let inner = |order: &str, name: Option<&String>| name.map(|n| format!("{order}:{n}"));
        let mut h = Harness::new(TableJoin::new(customers().into(), Arc::new(inner)));
        h.push(key("c1"), "o1").unwrap();
        h.push(key("c9"), "o2").unwrap();
        h.push(None, "o3").unwrap();
        h.push(key("c2"), "o4").unwrap();
        let out = h.take_output();
        let got: Vec<_> = out.iter().map(|r| (r.key.as_deref(), &*r.value)).collect();
        assert_eq!(got, [(Some("c1"), "o1:Ada"), (Some("c2"), "o4:Grace")]);
        assert_eq!(
            out[1].origin.offset, 3,
            "the output keeps its input's origin"
        );
    }

    #[test]
    fn left_join_meets_none_for_missing_rows_and_keyless_records() {
        let left = |order: &str, name: Option<&String>| Some((order.to_string(), name.cloned()));
        let mut h = Harness::new(TableJoin::new(customers().into(), Arc::new(left)));
        h.push(key("c2"), "o1").unwrap();
        h.push(key("c9"), "o2").unwrap();
        h.push(None, "o3").unwrap();
        assert_eq!(
            h.values(),
            [
                ("o1".to_string(), Some("Grace".to_string())),
                ("o2".to_string(), None),
                ("o3".to_string(), None),
            ]
        );
    }

    #[test]
    fn later_records_meet_updates_and_tombstones() {
        let table = customers();
        let left = |order: &str, name: Option<&String>| {
            Some(format!("{order}:{}", name.map_or("-", |n| n.as_str())))
        };
        let mut h = Harness::new(TableJoin::new(table.clone().into(), Arc::new(left)));
        h.push(key("c1"), "o1").unwrap();
        table.put("c1".into(), "Ada Lovelace".into());
        h.push(key("c1"), "o2").unwrap();
        assert!(table.delete(&"c1".to_string()));
        h.push(key("c1"), "o3").unwrap();
        table.put("c3".into(), "Hedy".into());
        h.push(key("c3"), "o4").unwrap();
        h.barrier().unwrap();
        assert_eq!(h.values(), ["o1:Ada", "o2:Ada Lovelace", "o3:-", "o4:Hedy"]);
    }

    #[test]
    fn a_replayed_cycle_meets_the_table_as_it_is_then() {
        // No state: an aborted cycle leaves nothing behind, and the replay joins again.
        let table = customers();
        let inner = |order: &str, name: Option<&String>| name.map(|n| format!("{order}:{n}"));
        let mut h = Harness::new(TableJoin::new(table.clone().into(), Arc::new(inner)));
        h.push(key("c1"), "o1").unwrap();
        h.abort();
        table.put("c1".into(), "Ada v2".into());
        h.push(key("c1"), "o1").unwrap();
        h.barrier().unwrap();
        assert_eq!(h.values(), ["o1:Ada", "o1:Ada v2"]);
    }

    #[test]
    fn a_topic_table_under_the_harness_is_a_clear_error() {
        let table: Table<String, String> =
            Table::topic("customers", Serde::string(), Serde::string());
        let inner = |order: &str, name: Option<&String>| name.map(|n| format!("{order}:{n}"));
        let mut h = Harness::new(TableJoin::new(table, Arc::new(inner)));
        let err = h.push(key("c1"), "o1").unwrap_err().to_string();
        assert!(
            err.contains("`customers`") && err.contains("Table::in_memory"),
            "{err}"
        );
    }

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
                && msg.contains("join `enrich`"),
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
