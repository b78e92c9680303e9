//! The core of keyed aggregations (`count`, `reduce`, `aggregate`): a per-key fold kept in
//! keyed state, behind a per-task record cache that folds a key's updates within a commit
//! cycle into **one** output record and **one** changelog record at the barrier — Kafka
//! Streams' record cache, emit-on-commit — or emits after every record
//! ([`Emit::EveryUpdate`]). And the pre-aggregation that runs before a repartition.

use exactly_framework::{Collector, Context, Header, KeyedState, Origin, Record, Result};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// When a keyed aggregation emits its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// Once per key and commit cycle, at the barrier: the key's last value of the cycle
    /// (the default; Kafka Streams' record cache). A key's outputs strictly increase in the
    /// cycle order; under `read_committed` the last one is the committed value.
    #[default]
    OnCommit,
    /// After every input record (one output per input record).
    EveryUpdate,
}

/// Estimated bytes of the per-task caches by default (Kafka Streams' 10 MiB).
pub const DEFAULT_CACHE_BYTES: u64 = 10 * 1024 * 1024;

/// How one record folds into a key's accumulator (`None`: the key's first record).
pub(crate) type FoldFn<V, A> = Arc<dyn Fn(Option<A>, V) -> A + Send + Sync>;

/// What an emitted result carries of the last record that updated it.
struct Envelope {
    timestamp: Option<i64>,
    headers: Vec<Header>,
    origin: Origin,
}

struct Entry<K, A> {
    key: Option<K>,
    acc: Option<A>,
    /// Set when updated in the open cycle (the last update's envelope).
    dirty: Option<Envelope>,
}

/// The estimated size of a cache entry: its encoded key, the accumulator, the map's slot.
fn entry_bytes<A>(encoded_key: usize) -> usize {
    encoded_key + std::mem::size_of::<A>() + 96
}

/// The cache budget of a task's aggregation, from the worker's configuration.
pub(crate) fn cache_budget(ctx: &Context) -> usize {
    ctx.config()
        .map_or(DEFAULT_CACHE_BYTES, |c| c.cache_max_bytes) as usize
}

fn encode_key<K: Serialize>(buf: &mut Vec<u8>, key: &Option<K>) -> Result<()> {
    buf.clear();
    bincode::serde::encode_into_std_write(key, buf, bincode::config::standard())
        .map(drop)
        .map_err(|e| exactly_framework::Error::State {
            op: "encode key",
            message: e.to_string(),
        })
}

/// A keyed fold in keyed state, with its record cache.
pub(crate) struct KeyedFold<K, V, A> {
    state: KeyedState<Option<K>, A>,
    fold: FoldFn<V, A>,
    emit: Emit,
    cache: FxHashMap<Vec<u8>, Entry<K, A>>,
    key: Vec<u8>,
    bytes: usize,
    budget: usize,
}

impl<K, V, A> KeyedFold<K, V, A>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    A: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    pub(crate) fn new(
        ctx: &Context,
        state: KeyedState<Option<K>, A>,
        fold: FoldFn<V, A>,
        emit: Emit,
    ) -> Self {
        KeyedFold {
            state,
            fold,
            emit,
            cache: FxHashMap::default(),
            key: Vec::with_capacity(64),
            bytes: 0,
            budget: cache_budget(ctx),
        }
    }

    /// Folds one record; emits now under [`Emit::EveryUpdate`], at the barrier otherwise.
    pub(crate) fn process(
        &mut self,
        record: Record<K, V>,
        out: &mut dyn Collector<K, A>,
    ) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
            origin,
        } = record;
        if self.emit == Emit::EveryUpdate {
            let acc = (self.fold)(self.state.get(&key)?, value);
            self.state.put(&key, &acc)?;
            return out.collect(Record {
                key,
                value: acc,
                timestamp,
                headers,
                origin,
            });
        }
        encode_key(&mut self.key, &key)?;
        let envelope = Envelope {
            timestamp,
            headers,
            origin,
        };
        if let Some(entry) = self.cache.get_mut(self.key.as_slice()) {
            entry.acc = Some((self.fold)(entry.acc.take(), value));
            entry.dirty = Some(envelope);
            return Ok(());
        }
        let acc = (self.fold)(self.state.get(&key)?, value);
        self.bytes += entry_bytes::<A>(self.key.len());
        self.cache.insert(
            self.key.clone(),
            Entry {
                key,
                acc: Some(acc),
                dirty: Some(envelope),
            },
        );
        if self.bytes > self.budget {
            // Over budget: flush early (still in the open transaction) and start afresh.
            self.flush(out)?;
            self.cache.clear();
            self.bytes = 0;
        }
        Ok(())
    }

    /// At the barrier: every key updated in the cycle goes to state (and so to the
    /// changelog) and downstream, once.
    pub(crate) fn flush(&mut self, out: &mut dyn Collector<K, A>) -> Result<()> {
        for entry in self.cache.values_mut() {
            let Some(envelope) = entry.dirty.take() else {
                continue;
            };
            let Some(acc) = &entry.acc else { continue };
            self.state.put(&entry.key, acc)?;
            out.collect(Record {
                key: entry.key.clone(),
                value: acc.clone(),
                timestamp: envelope.timestamp,
                headers: envelope.headers,
                origin: envelope.origin,
            })?;
        }
        Ok(())
    }

    /// After an abort: the cache may hold values of the dropped cycle.
    pub(crate) fn abort(&mut self) {
        self.cache.clear();
        self.bytes = 0;
    }
}

/// Folds a key's records within one commit cycle, before a repartition, and emits one
/// partial accumulator per key at the barrier (into the hop, in the same transaction). No
/// state: a partial never outlives its cycle; an abort drops it. The aggregation after the
/// hop combines the partials.
pub struct PreAggregate<K, V, A> {
    fold: FoldFn<V, A>,
    cache: FxHashMap<Vec<u8>, Entry<K, A>>,
    key: Vec<u8>,
    bytes: usize,
    budget: usize,
}

impl<K, V, A> PreAggregate<K, V, A> {
    /// A pre-aggregation with `fold`, its cache bounded as the worker's configuration says.
    pub(crate) fn new(ctx: &Context, fold: FoldFn<V, A>) -> Self {
        PreAggregate {
            fold,
            cache: FxHashMap::default(),
            key: Vec::with_capacity(64),
            bytes: 0,
            budget: cache_budget(ctx),
        }
    }

    fn flush(&mut self, out: &mut dyn Collector<K, A>) -> Result<()> {
        for (_, entry) in self.cache.drain() {
            if let (Some(acc), Some(envelope)) = (entry.acc, entry.dirty) {
                out.collect(Record {
                    key: entry.key,
                    value: acc,
                    timestamp: envelope.timestamp,
                    headers: envelope.headers,
                    origin: envelope.origin,
                })?;
            }
        }
        self.bytes = 0;
        Ok(())
    }
}

impl<K, V, A> exactly_framework::Operator<K, V> for PreAggregate<K, V, A>
where
    K: Serialize + Send + 'static,
    V: Send + 'static,
    A: Send + 'static,
{
    type OutKey = K;
    type OutValue = A;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, A>,
    ) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
            origin,
        } = record;
        encode_key(&mut self.key, &key)?;
        let envelope = Envelope {
            timestamp,
            headers,
            origin,
        };
        if let Some(entry) = self.cache.get_mut(self.key.as_slice()) {
            entry.acc = Some((self.fold)(entry.acc.take(), value));
            entry.dirty = Some(envelope);
            return Ok(());
        }
        self.bytes += entry_bytes::<A>(self.key.len());
        let acc = (self.fold)(None, value);
        self.cache.insert(
            self.key.clone(),
            Entry {
                key,
                acc: Some(acc),
                dirty: Some(envelope),
            },
        );
        if self.bytes > self.budget {
            self.flush(out)?;
        }
        Ok(())
    }

    fn on_barrier(&mut self, _: &mut Context, out: &mut dyn Collector<K, A>) -> Result<()> {
        self.flush(out)
    }

    fn on_abort(&mut self, _: &mut Context) {
        self.cache.clear();
        self.bytes = 0;
    }
}
