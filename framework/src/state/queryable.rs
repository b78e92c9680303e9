//! Which states of this worker can be queried, per task, and how a key written in a URL
//! becomes the stored key and the partition that owns it.
//!
//! A keyed state registers itself when its task opens it ([`QueryRegistry::open`]: the
//! partition is *restoring*), becomes *ready* once restored, and leaves when its task
//! closes (the [`Registration`] is dropped with the state). Only states keyed by their
//! stage's input key type are queryable: the stage's key codec then decodes a URL key, and
//! the partition of a key is where the stage's input puts it.
// Without the `query` feature nothing reads the registry (tasks still register).
#![cfg_attr(not(feature = "query"), allow(dead_code))]

use super::store;
use crate::codec::Codec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A key as a query gives it, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryKey {
    /// The key as the state stores it.
    pub(crate) stored: Vec<u8>,
    /// The key as the stage's input carries it (what the partitioner hashes).
    pub(crate) wire: Vec<u8>,
    /// The key as JSON, for answers.
    pub(crate) json: Value,
}

/// A state's key and value types, erased: what the query server needs of them.
pub(crate) trait QueryCodec: Send + Sync {
    /// Decodes a key written in a URL with the stage's key codec.
    fn key(&self, text: &str) -> Result<QueryKey, String>;
    /// A stored key as JSON.
    fn key_json(&self, stored: &[u8]) -> Result<Value, String>;
    /// A stored value as JSON.
    fn value_json(&self, stored: &[u8]) -> Result<Value, String>;
}

/// [`QueryCodec`] for a state of `K` to `V` whose stage input is keyed by `K`.
pub(crate) struct TypedQueryCodec<K, V> {
    key: Arc<dyn Codec<K>>,
    _value: PhantomData<fn() -> V>,
}

impl<K, V> TypedQueryCodec<K, V> {
    pub(crate) fn new(key: Arc<dyn Codec<K>>) -> Self {
        TypedQueryCodec {
            key,
            _value: PhantomData,
        }
    }
}

fn bincode_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(t, _)| t)
        .map_err(|e| e.to_string())
}

impl<K, V> QueryCodec for TypedQueryCodec<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn key(&self, text: &str) -> Result<QueryKey, String> {
        let key = self.key.decode(Some(text.as_bytes()))?;
        let stored = bincode::serde::encode_to_vec(&key, bincode::config::standard())
            .map_err(|e| e.to_string())?;
        let wire = self
            .key
            .encode(&key)?
            .map(|k| k.into_owned())
            .unwrap_or_default();
        let json = serde_json::to_value(&key).map_err(|e| e.to_string())?;
        Ok(QueryKey { stored, wire, json })
    }

    fn key_json(&self, stored: &[u8]) -> Result<Value, String> {
        serde_json::to_value(bincode_decode::<K>(stored)?).map_err(|e| e.to_string())
    }

    fn value_json(&self, stored: &[u8]) -> Result<Value, String> {
        serde_json::to_value(bincode_decode::<V>(stored)?).map_err(|e| e.to_string())
    }
}

/// Where one partition of a state stands on this worker.
#[derive(Clone)]
pub(crate) enum Local {
    /// Not a task of this worker.
    Elsewhere,
    /// Being restored from its changelog.
    Restoring,
    /// Queryable: its committed values.
    Ready(super::store::Tree),
}

struct TaskEntry {
    registration: u64,
    tree: Option<super::store::Tree>,
}

/// One queryable state (an operator's keyed state) on this worker.
pub(crate) struct Store {
    /// The stage's input topic: its partitions are the state's.
    pub(crate) topic: String,
    /// How many partitions it has.
    pub(crate) partitions: usize,
    pub(crate) codec: Arc<dyn QueryCodec>,
    tasks: BTreeMap<i32, TaskEntry>,
}

/// The queryable states of one worker, shared by its tasks and its query server.
#[derive(Default)]
pub struct QueryRegistry {
    /// By (operator, state). Kept when the last task leaves, so that a key can still be
    /// routed to its owner.
    stores: RwLock<HashMap<(String, String), Store>>,
    next_registration: AtomicU64,
}

impl std::fmt::Debug for QueryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRegistry")
            .field("stores", &self.read().keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A state's presence in the registry; dropped with the state when its task closes.
pub(crate) struct Registration {
    registry: Arc<QueryRegistry>,
    store: (String, String),
    partition: i32,
    id: u64,
}

impl Registration {
    /// The state is restored: queries read `tree` from now on.
    pub(crate) fn ready(&self, tree: super::store::Tree) {
        if let Some(task) = self
            .registry
            .write()
            .get_mut(&self.store)
            .and_then(|s| s.tasks.get_mut(&self.partition))
            .filter(|t| t.registration == self.id)
        {
            task.tree = Some(tree);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut stores = self.registry.write();
        if let Some(store) = stores.get_mut(&self.store) {
            // A later registration of the same partition (the task came back) stays.
            if store
                .tasks
                .get(&self.partition)
                .is_some_and(|t| t.registration == self.id)
            {
                store.tasks.remove(&self.partition);
            }
        }
    }
}

impl QueryRegistry {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<(String, String), Store>> {
        self.stores.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<(String, String), Store>> {
        self.stores.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `operator`'s state `state` known before any task opens it (its stage's input
    /// `topic` with `partitions` partitions), so that its keys can be routed.
    pub(crate) fn declare(
        &self,
        operator: &str,
        state: &str,
        topic: &str,
        partitions: usize,
        codec: Arc<dyn QueryCodec>,
    ) {
        self.write()
            .entry((operator.to_string(), state.to_string()))
            .or_insert_with(|| Store {
                topic: topic.to_string(),
                partitions,
                codec,
                tasks: BTreeMap::new(),
            });
    }

    /// Registers partition `partition` of `operator`'s state `state` as restoring.
    pub(crate) fn open(
        self: &Arc<Self>,
        operator: &str,
        state: &str,
        topic: &str,
        partitions: usize,
        partition: i32,
        codec: Arc<dyn QueryCodec>,
    ) -> Registration {
        let id = self.next_registration.fetch_add(1, Ordering::Relaxed);
        let key = (operator.to_string(), state.to_string());
        let mut stores = self.write();
        let store = stores.entry(key.clone()).or_insert_with(|| Store {
            topic: topic.to_string(),
            partitions,
            codec: codec.clone(),
            tasks: BTreeMap::new(),
        });
        store.codec = codec;
        store.tasks.insert(
            partition,
            TaskEntry {
                registration: id,
                tree: None,
            },
        );
        Registration {
            registry: self.clone(),
            store: key,
            partition,
            id,
        }
    }

    /// The state a URL names: `operator` when the operator has one queryable state,
    /// `operator.state` always. `Err` lists what there is.
    pub(crate) fn resolve(&self, name: &str) -> Result<(String, String), Vec<String>> {
        let stores = self.read();
        let mut matches: Vec<&(String, String)> = stores
            .keys()
            .filter(|(op, st)| format!("{op}.{st}") == name)
            .collect();
        if matches.is_empty() {
            matches = stores.keys().filter(|(op, _)| op == name).collect();
        }
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            _ => {
                let mut all: Vec<String> =
                    stores.keys().map(|(op, st)| format!("{op}.{st}")).collect();
                all.sort();
                Err(all)
            }
        }
    }

    /// The topic, partition count and codec of a state.
    pub(crate) fn store(
        &self,
        store: &(String, String),
    ) -> Option<(String, usize, Arc<dyn QueryCodec>)> {
        self.read()
            .get(store)
            .map(|s| (s.topic.clone(), s.partitions, s.codec.clone()))
    }

    /// Where `partition` of a state stands on this worker.
    pub(crate) fn local(&self, store: &(String, String), partition: i32) -> Local {
        match self.read().get(store).and_then(|s| s.tasks.get(&partition)) {
            None => Local::Elsewhere,
            Some(TaskEntry { tree: None, .. }) => Local::Restoring,
            Some(TaskEntry {
                tree: Some(tree), ..
            }) => Local::Ready(tree.clone()),
        }
    }

    /// The partitions of a state on this worker: ready ones with their trees, and the
    /// number still restoring.
    pub(crate) fn local_partitions(
        &self,
        store: &(String, String),
    ) -> (Vec<(i32, super::store::Tree)>, usize) {
        let stores = self.read();
        let Some(s) = stores.get(store) else {
            return (Vec::new(), 0);
        };
        let ready = s
            .tasks
            .iter()
            .filter_map(|(p, t)| t.tree.clone().map(|tree| (*p, tree)))
            .collect();
        let restoring = s.tasks.values().filter(|t| t.tree.is_none()).count();
        (ready, restoring)
    }

    /// Partitions held by this worker over all states, and how many of them restore.
    pub(crate) fn health(&self) -> (usize, usize) {
        let stores = self.read();
        let held = stores.values().map(|s| s.tasks.len()).sum();
        let restoring = stores
            .values()
            .flat_map(|s| s.tasks.values())
            .filter(|t| t.tree.is_none())
            .count();
        (held, restoring)
    }
}

/// The committed value of a stored key in `tree`.
pub(crate) fn committed_value(
    tree: &super::store::Tree,
    stored_key: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    store::get(tree, stored_key).map_err(|e| e.to_string())
}

/// The partition librdkafka's `murmur2` partitioner (the runtime's, and the Java client's
/// default for keyed records) gives `key` among `partitions`.
pub(crate) fn partition_of(key: &[u8], partitions: usize) -> i32 {
    // SAFETY: the partitioner only reads `keylen` bytes at `key`; it does not use the topic
    // or the opaques, which may be null.
    unsafe {
        rdkafka::bindings::rd_kafka_msg_partitioner_murmur2(
            std::ptr::null(),
            key.as_ptr().cast(),
            key.len(),
            partitions as i32,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Serde;

    #[test]
    fn keys_partition_as_the_java_client_does() {
        // Values of org.apache.kafka.common.utils.Utils.murmur2 (toPositive, mod n), as the
        // Java producer's default partitioner places these keys.
        let java = [
            (&b""[..], 275_646_681i32),
            (&b"21"[..], -973_932_308),
            (&b"foobar"[..], -790_332_482),
            (&b"abc"[..], 479_470_107),
            (&b"a-little-bit-long-string"[..], -985_981_536),
        ];
        for (key, hash) in java {
            assert_eq!(partition_of(key, 1000), (hash & 0x7fff_ffff) % 1000);
        }
    }

    #[test]
    fn a_url_key_decodes_with_the_stage_codec() {
        let codec = TypedQueryCodec::<String, u64>::new(Arc::new(Serde::string()));
        let k = codec.key("the").unwrap();
        assert_eq!(k.wire, b"the");
        assert_eq!(k.json, Value::String("the".into()));
        assert_eq!(codec.key_json(&k.stored).unwrap(), k.json);
        let v = bincode::serde::encode_to_vec(42u64, bincode::config::standard()).unwrap();
        assert_eq!(codec.value_json(&v).unwrap(), serde_json::json!(42));
    }

    #[test]
    fn a_closed_task_leaves_and_a_late_drop_keeps_its_successor() {
        let registry = Arc::new(QueryRegistry::default());
        let codec: Arc<dyn QueryCodec> = Arc::new(TypedQueryCodec::<String, u64>::new(Arc::new(
            Serde::string(),
        )));
        let store = ("count".to_string(), "counts".to_string());
        let first = registry.open("count", "counts", "t", 4, 1, codec.clone());
        assert!(matches!(registry.local(&store, 1), Local::Restoring));
        let second = registry.open("count", "counts", "t", 4, 1, codec);
        drop(first);
        assert!(matches!(registry.local(&store, 1), Local::Restoring));
        let temp = crate::state::store::tests::TempStore::new("queryable");
        let tree = temp.store.tree("x").unwrap();
        second.ready(tree);
        assert!(matches!(registry.local(&store, 1), Local::Ready(_)));
        assert_eq!(registry.resolve("count"), Ok(store.clone()));
        assert_eq!(registry.resolve("count.counts"), Ok(store.clone()));
        assert!(registry.resolve("sum").is_err());
        drop(second);
        assert!(matches!(registry.local(&store, 1), Local::Elsewhere));
        // The store stays known, for routing.
        assert!(registry.store(&store).is_some());
    }
}
