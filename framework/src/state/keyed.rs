//! Typed per-key state handles and the per-task cell behind them.

use super::applier::{Applier, InFlight, Layer};
use super::changelog::ChangelogWriter;
use super::store::{self, Checkpoint, PreparedBatch};
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

/// Names a keyed state of an operator and fixes its key and value types:
/// `StateDescriptor::<String, u64>::new("counts")`. Keys and values are stored with
/// bincode 2 through serde.
pub struct StateDescriptor<K, V> {
    name: String,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> StateDescriptor<K, V> {
    /// A descriptor for the state `name` (unique within the operator; ASCII letters, digits,
    /// `-` and `_`, since it names the changelog topic).
    pub fn new(name: impl Into<String>) -> Self {
        StateDescriptor {
            name: name.into(),
            _types: PhantomData,
        }
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where committed values live.
pub(crate) enum Committed {
    /// The worker's store tree for this state and task.
    Store(store::Tree),
    /// In memory (the test harness).
    Memory(HashMap<Vec<u8>, Vec<u8>>),
}

/// One state of one task: committed values, the dirty overlay, and where its changelog goes.
pub(crate) struct StateCell {
    pub(crate) committed: Committed,
    pub(crate) overlay: Layer,
    pub(crate) changelog: Option<ChangelogWriter>,
    pub(crate) checkpoint: Checkpoint,
    /// Writes committed overlays to the store off the processing thread (with a changelog).
    pub(crate) applier: Option<Applier>,
    /// The last committed overlay while the applier writes it: read between the overlay
    /// and the store.
    pub(crate) applying: Option<InFlight>,
    /// This state's entry in the query server's registry, removed with the cell.
    pub(crate) registration: Option<crate::state::queryable::Registration>,
    /// Keeps the worker's standby off this state's changelog partition while it is open.
    pub(crate) active: Option<super::standby::ActiveGuard>,
}

impl StateCell {
    /// A cell over `committed` with an empty overlay.
    pub(crate) fn new(
        committed: Committed,
        changelog: Option<ChangelogWriter>,
        checkpoint: Checkpoint,
        applier: Option<Applier>,
    ) -> Self {
        StateCell {
            committed,
            overlay: Layer::new(),
            changelog,
            checkpoint,
            applier,
            applying: None,
            registration: None,
            active: None,
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.applying.as_ref().and_then(|a| a.layer.get(key)) {
            return Ok(v.clone());
        }
        match &self.committed {
            Committed::Store(tree) => store::get(tree, key),
            Committed::Memory(m) => Ok(m.get(key).cloned()),
        }
    }

    /// Every (key, value) as this cycle sees it, in encoded-key order.
    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut all: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = match &self.committed {
            Committed::Store(tree) => store::scan(tree)?.into_iter().collect(),
            Committed::Memory(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let applying = self.applying.iter().map(|a| a.layer.as_ref());
        for layer in applying.chain(std::iter::once(&self.overlay)) {
            for (k, v) in layer {
                match v {
                    Some(v) => all.insert(k.clone(), v.clone()),
                    None => all.remove(k),
                };
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Step 2: the last value of every dirty key to the changelog, in the open transaction.
    pub(crate) fn barrier(&mut self) -> Result<()> {
        if let Some(changelog) = &self.changelog {
            for (k, v) in &self.overlay {
                changelog.write(k, v.as_deref())?;
            }
        }
        Ok(())
    }

    /// Step 5: after the Kafka commit, the overlay and the checkpoint go to the store in one
    /// batch.
    pub(crate) fn commit(&mut self, input_offset: i64) -> Result<()> {
        // The previous cycle's batch first: a tree's batches land in commit order, and at
        // most one is in flight.
        self.settle()?;
        let overlay = std::mem::take(&mut self.overlay);
        match &mut self.committed {
            Committed::Memory(m) => {
                for (k, v) in overlay {
                    match v {
                        Some(v) => m.insert(k, v),
                        None => m.remove(&k),
                    };
                }
                Ok(())
            }
            Committed::Store(tree) => {
                let changelog_offset = match &self.changelog {
                    Some(changelog) => changelog
                        .end()
                        .unwrap_or(self.checkpoint.changelog_offset)
                        .max(self.checkpoint.changelog_offset),
                    None => self.checkpoint.changelog_offset,
                };
                self.checkpoint = Checkpoint::now(input_offset, changelog_offset);
                match &self.applier {
                    // With a changelog, the store only caches what the changelog holds.
                    Some(applier) if self.changelog.is_some() => {
                        self.applying = Some(applier.submit(tree, overlay, self.checkpoint));
                        Ok(())
                    }
                    // Made durable once per cycle for all tasks by `StateManager::flush`.
                    _ => PreparedBatch::new(overlay, self.checkpoint)?.apply(tree),
                }
            }
        }
    }

    /// Waits until the committed layer in flight, if any, is in the store.
    ///
    /// # Errors
    /// [`Error::State`] when the store refused it.
    pub(crate) fn settle(&mut self) -> Result<()> {
        match self.applying.take() {
            Some(in_flight) => in_flight.wait(),
            None => Ok(()),
        }
    }

    /// After an abort: forget the cycle.
    pub(crate) fn abort(&mut self) {
        self.overlay.clear();
    }
}

impl Drop for StateCell {
    /// A closed state (its task revoked, its worker stopping or recovering) leaves its
    /// committed layer in the store for whoever opens the tree next.
    fn drop(&mut self) {
        if let Err(err) = self.settle() {
            tracing::error!(%err, "a committed state change could not be applied locally; a restart replays it from the changelog");
        }
    }
}

/// A typed handle on one keyed state of the task. Reads see this cycle's writes; writes
/// become durable only when the cycle commits.
pub struct KeyedState<K, V> {
    pub(crate) cell: Arc<Mutex<StateCell>>,
    pub(crate) name: String,
    pub(crate) _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize, V: Serialize + DeserializeOwned> KeyedState<K, V> {
    fn cell(&self) -> MutexGuard<'_, StateCell> {
        self.cell.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn encode<T: Serialize>(&self, what: &'static str, t: &T) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(t, bincode::config::standard()).map_err(|e| Error::State {
            op: what,
            message: format!("state `{}`: {e}", self.name),
        })
    }

    fn decode<T: DeserializeOwned>(&self, what: &'static str, bytes: &[u8]) -> Result<T> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(t, _)| t)
            .map_err(|e| Error::State {
                op: what,
                message: format!("state `{}`: {e}", self.name),
            })
    }

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// [`Error::State`] when the store fails or a stored value does not decode as `V`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = self.encode("encode key", key)?;
        match self.cell().get(&k)? {
            None => Ok(None),
            Some(bytes) => self.decode("decode value", &bytes).map(Some),
        }
    }

    /// Every (key, value) of this task's state, this cycle's writes included, ordered by
    /// the keys' encoded bytes. Reads the whole state: meant for operators that must visit
    /// their keys now and then (closing windows, expiring entries) or rebuild an index after
    /// [`Operator::on_assign`](crate::Operator::on_assign) and
    /// [`on_abort`](crate::Operator::on_abort).
    ///
    /// # Errors
    /// [`Error::State`] when the store fails or a key or value does not decode.
    pub fn entries(&self) -> Result<Vec<(K, V)>>
    where
        K: DeserializeOwned,
    {
        let raw = self.cell().entries()?;
        raw.iter()
            .map(|(k, v)| {
                Ok((
                    self.decode("decode key", k)?,
                    self.decode("decode value", v)?,
                ))
            })
            .collect()
    }

    /// Sets the value of `key`.
    ///
    /// # Errors
    /// [`Error::State`] when the key or value cannot be encoded.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let (k, v) = (
            self.encode("encode key", key)?,
            self.encode("encode value", value)?,
        );
        self.cell().overlay.insert(k, Some(v));
        Ok(())
    }

    /// Removes `key` (a tombstone in the changelog).
    ///
    /// # Errors
    /// [`Error::State`] when the key cannot be encoded.
    pub fn delete(&self, key: &K) -> Result<()> {
        let k = self.encode("encode key", key)?;
        self.cell().overlay.insert(k, None);
        Ok(())
    }

    /// Replaces the value of `key` with `f(current)`; `None` deletes it. Returns the new value.
    ///
    /// # Errors
    /// As [`get`](Self::get) and [`put`](Self::put).
    pub fn update(&self, key: &K, f: impl FnOnce(Option<V>) -> Option<V>) -> Result<Option<V>>
    where
        V: Clone,
    {
        let new = f(self.get(key)?);
        match &new {
            Some(v) => self.put(key, v)?,
            None => self.delete(key)?,
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(tree: &store::Tree, applier: Option<Applier>) -> StateCell {
        StateCell::new(
            Committed::Store(tree.clone()),
            None,
            Checkpoint::now(0, 0),
            applier,
        )
    }

    #[test]
    fn reads_see_a_committed_layer_until_the_store_has_it() {
        let temp = store::tests::TempStore::new("keyed");
        let tree = temp.store.tree("t").unwrap();
        PreparedBatch::new(
            [(b"old".to_vec(), Some(b"0".to_vec()))].into(),
            Checkpoint::now(1, 1),
        )
        .unwrap()
        .apply(&tree)
        .unwrap();
        let mut c = cell(&tree, None);
        // Committed, not yet in the store: the layer answers, above the store and below the
        // overlay.
        c.applying = Some(InFlight::never_applied(
            [
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"old".to_vec(), None),
            ]
            .into(),
        ));
        assert_eq!(store::get(&tree, b"a").unwrap(), None);
        assert_eq!(c.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            c.get(b"old").unwrap(),
            None,
            "a committed delete hides the store's value"
        );
        c.overlay.insert(b"a".to_vec(), Some(b"2".to_vec()));
        assert_eq!(c.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(c.entries().unwrap(), vec![(b"a".to_vec(), b"2".to_vec())]);
        c.applying = None;
        c.overlay.clear();
        drop(c);

        // Without a changelog, step 5 applies at once (the applier path: applier tests).
        let mut c = cell(&tree, Some(Applier::start().unwrap()));
        c.changelog = None;
        c.overlay.insert(b"b".to_vec(), Some(b"3".to_vec()));
        c.commit(5).unwrap();
        assert_eq!(c.get(b"b").unwrap(), Some(b"3".to_vec()));
        drop(c);
        assert_eq!(store::get(&tree, b"b").unwrap(), Some(b"3".to_vec()));
        assert_eq!(store::checkpoint(&tree).unwrap().unwrap().input_offset, 5);
    }
}
