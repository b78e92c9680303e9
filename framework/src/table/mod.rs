//! Global tables: a compacted topic materialised in every worker process and read by
//! operators — the stream–table join of `exactly-operators` — through
//! [`Context::global_table`](crate::Context::global_table), as Kafka Streams'
//! `GlobalKTable` is read beside its stream threads. The reader service (`reader.rs`) is
//! the framework's, not an operator's: one materialisation per process, shared by every
//! task that joins against it.
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
//! - The table topic is missing: [`Error::MissingTopic`] when a task
//!   opens the table; the worker stops.
//! - A table record whose key or value does not decode: [`Error::Decode`] naming the table
//!   topic, partition and offset. Nothing is skipped silently. Met during the bootstrap, it
//!   is fatal when the bootstrap ends unless a later record of the same key replaced it —
//!   so writing a valid value (or a tombstone) for that key repairs the table at the next
//!   start, before compaction removes the bad record. Met afterwards, the reader stops and
//!   every join task of the process fails at its next record, so no stream record meets a
//!   table that lacks an update.
//! - Under the test harness (no Kafka: `Context::config` is `None`) a topic table is an
//!   [`Error::Config`]; give the operator a [`Table::in_memory`] or a [`MemoryTable`].

mod reader;

pub use reader::live_tables;

use crate::codec::Codec;
use crate::config::Config;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// How long an unused materialisation lives on by default (see [`Table::keep_alive`]).
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The table side of a stream–table join: where its rows come from. See the
/// [module documentation](self) for how a topic table is materialised.
///
/// ```
/// use exactly_framework::Serde;
/// use exactly_framework::table::Table;
///
/// let from_kafka = Table::topic("customers", Serde::string(), Serde::string());
/// let in_memory = Table::in_memory([("c1".to_string(), "Ada".to_string())]);
/// assert_eq!(from_kafka.topic_name(), Some("customers"));
/// assert_eq!(in_memory.topic_name(), None);
/// ```
pub struct Table<K, T> {
    pub(crate) source: Source<K, T>,
    pub(crate) keep_alive: Duration,
}

pub(crate) enum Source<K, T> {
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
    /// use exactly_framework::table::Table;
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
    /// use exactly_framework::table::Table;
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
    /// use exactly_framework::table::Table;
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
    /// use exactly_framework::table::Table;
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
/// use exactly_framework::table::{MemoryTable, Table};
///
/// let customers = MemoryTable::new([("c1".to_string(), "Ada".to_string())]);
/// let table: Table<String, String> = customers.clone().into();
/// customers.put("c2".to_string(), "Grace".to_string());
/// customers.delete(&"c1".to_string());
/// assert_eq!(customers.len(), 1);
/// # let _ = table;
/// ```
pub struct MemoryTable<K, T> {
    pub(crate) rows: Arc<Rows<K, T>>,
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
    /// use exactly_framework::table::MemoryTable;
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
    /// use exactly_framework::table::MemoryTable;
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
    /// use exactly_framework::table::MemoryTable;
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
    /// use exactly_framework::table::MemoryTable;
    ///
    /// assert_eq!(MemoryTable::new([(1, "a")]).get(&2), None);
    /// ```
    pub fn get(&self, key: &K) -> Option<Arc<T>> {
        self.rows.get(key)
    }

    /// The number of rows.
    ///
    /// ```
    /// use exactly_framework::table::MemoryTable;
    ///
    /// assert_eq!(MemoryTable::new([(1, "a"), (2, "b")]).len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    ///
    /// ```
    /// use exactly_framework::table::MemoryTable;
    ///
    /// assert!(MemoryTable::<u8, u8>::new([]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rows of a table, shared between its writer and the join tasks.
pub(crate) struct Rows<K, T>(pub(crate) RwLock<HashMap<K, Arc<T>>>);

impl<K, T> Rows<K, T> {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HashMap<K, Arc<T>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, Arc<T>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }
}

impl<K: Eq + Hash, T> Rows<K, T> {
    /// The row of `key`; the lock is released before the joiner runs.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<T>> {
        self.read().get(key).cloned()
    }
    pub(crate) fn put(&self, key: K, value: T) {
        self.write().insert(key, Arc::new(value));
    }
    pub(crate) fn delete(&self, key: &K) -> bool {
        self.write().remove(key).is_some()
    }
}

pub(crate) fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A task's hold on a table, from [`Context::global_table`](crate::Context::global_table):
/// the rows it reads. A topic table's reader keeps it up to date in the background;
/// dropping the last hold of the process starts the table's keep-alive.
pub struct GlobalTable<K, T> {
    rows: Handle<K, T>,
    operator: String,
}

enum Handle<K, T> {
    Memory(Arc<Rows<K, T>>),
    Topic(reader::Lease<K, T>),
}

impl<K: Eq + Hash, T> GlobalTable<K, T> {
    /// The row of `key` now.
    ///
    /// # Errors
    /// The table's reader stopped (an undecodable table record, a fatal consumer error):
    /// no record may meet a table that lacks an update.
    pub fn get(&self, key: &K) -> Result<Option<Arc<T>>> {
        match &self.rows {
            Handle::Memory(rows) => Ok(rows.get(key)),
            Handle::Topic(lease) => {
                lease.check(&self.operator)?;
                Ok(lease.table.rows.get(key))
            }
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        match &self.rows {
            Handle::Memory(rows) => rows.len(),
            Handle::Topic(lease) => lease.table.rows.len(),
        }
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens `table` for `operator`: a topic table is materialised in this process (or found
/// loaded) before this returns. `config` is `None` under the test harness.
pub(crate) fn open<K, T>(
    table: &Table<K, T>,
    config: Option<&Config>,
    operator: &str,
) -> Result<GlobalTable<K, T>>
where
    K: Eq + Hash + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    let rows = match &table.source {
        Source::Memory(m) => Handle::Memory(m.rows.clone()),
        Source::Topic { topic, key, value } => {
            let Some(config) = config else {
                return Err(Error::config(
                    "table",
                    format!(
                        "`{operator}` reads its table from the topic `{topic}`, and the test \
                         harness has no Kafka: give it a Table::in_memory(rows) or a MemoryTable"
                    ),
                ));
            };
            Handle::Topic(reader::acquire(
                config,
                topic,
                key,
                value,
                table.keep_alive,
                operator,
            )?)
        }
    };
    Ok(GlobalTable {
        rows,
        operator: operator.to_string(),
    })
}
