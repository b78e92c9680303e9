//! The local sled store: one tree per (state, task), user keys and the checkpoint in the
//! same tree so that one batch applies both atomically.

use crate::error::{Error, Result};
use crate::record::now_ms;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where a task's local state stands: the input offset it reflects, the changelog offset
/// to replay from, and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Next input offset after the last committed cycle applied here.
    pub input_offset: i64,
    /// Next changelog offset after the last changelog record applied here.
    pub changelog_offset: i64,
    /// When the local store applied it, in ms since the epoch (0: unknown). A checkpoint
    /// older than the changelog's `delete.retention.ms` may have missed tombstones that
    /// compaction has removed since, so it is not replayed from but rebuilt.
    pub written_at_ms: u64,
}

impl Checkpoint {
    /// A checkpoint written now.
    pub(crate) fn now(input_offset: i64, changelog_offset: i64) -> Self {
        Checkpoint {
            input_offset,
            changelog_offset,
            written_at_ms: now_ms(),
        }
    }

    /// How long ago it was written (`None`: unknown).
    pub(crate) fn age(&self) -> Option<std::time::Duration> {
        (self.written_at_ms > 0)
            .then(|| std::time::Duration::from_millis(now_ms().saturating_sub(self.written_at_ms)))
    }
}

/// The checkpoint as stores before `written_at_ms` wrote it.
#[derive(Deserialize)]
struct LegacyCheckpoint {
    input_offset: i64,
    changelog_offset: i64,
}

/// User keys live under this prefix byte, the checkpoint under [`CHECKPOINT_KEY`].
const DATA_PREFIX: u8 = 0;
const CHECKPOINT_KEY: &[u8] = &[1];

pub(crate) fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key);
    k
}

fn sled_error(op: &'static str) -> impl Fn(sled::Error) -> Error {
    move |e| Error::State {
        op,
        message: e.to_string(),
    }
}

/// Opens the worker's state database under `dir`, with a page cache of `cache_bytes`.
///
/// # Errors
/// [`Error::State`] when the directory cannot be opened (for example another worker holds
/// it: give each worker its own `state_dir`).
pub(crate) fn open(dir: &std::path::Path, cache_bytes: u64) -> Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(200))
        .open()
        .map_err(|e| Error::State {
            op: "open",
            message: format!(
                "{}: {e} (is another program using this directory?)",
                dir.display()
            ),
        })
}

/// A committed value lookup (no overlay).
pub(crate) fn get(tree: &sled::Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(tree
        .get(data_key(key))
        .map_err(sled_error("get"))?
        .map(|v| v.to_vec()))
}

/// Every committed (key, value) of the tree, user keys only, in key order.
pub(crate) fn scan(tree: &sled::Tree) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    tree.scan_prefix([DATA_PREFIX])
        .map(|kv| {
            let (k, v) = kv.map_err(sled_error("scan"))?;
            Ok((k[1..].to_vec(), v.to_vec()))
        })
        .collect()
}

/// Up to `limit` committed (key, value) pairs with `from <= key <= to` (encoded user keys;
/// `None`: unbounded), in key order.
///
/// # Errors
/// [`Error::State`] for an unreadable store.
#[cfg_attr(not(feature = "query"), allow(dead_code))]
pub(crate) fn scan_range(
    tree: &sled::Tree,
    from: Option<&[u8]>,
    to: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::ops::Bound;
    let lower = Bound::Included(data_key(from.unwrap_or_default()));
    let upper = match to {
        Some(to) => Bound::Included(data_key(to)),
        None => Bound::Excluded(vec![DATA_PREFIX + 1]),
    };
    tree.range::<Vec<u8>, _>((lower, upper))
        .take(limit)
        .map(|kv| {
            let (k, v) = kv.map_err(sled_error("scan"))?;
            Ok((k[1..].to_vec(), v.to_vec()))
        })
        .collect()
}

/// The tree's checkpoint, if any.
///
/// # Errors
/// [`Error::State`] for an unreadable store.
pub(crate) fn checkpoint(tree: &sled::Tree) -> Result<Option<Checkpoint>> {
    match tree
        .get(CHECKPOINT_KEY)
        .map_err(sled_error("read checkpoint"))?
    {
        None => Ok(None),
        Some(bytes) => {
            let config = bincode::config::standard();
            match bincode::serde::decode_from_slice::<Checkpoint, _>(&bytes, config) {
                Ok((c, n)) if n == bytes.len() => Ok(Some(c)),
                _ => bincode::serde::decode_from_slice::<LegacyCheckpoint, _>(&bytes, config)
                    .map(|(c, _)| {
                        Some(Checkpoint {
                            input_offset: c.input_offset,
                            changelog_offset: c.changelog_offset,
                            written_at_ms: 0,
                        })
                    })
                    .map_err(|e| Error::State {
                        op: "read checkpoint",
                        message: e.to_string(),
                    }),
            }
        }
    }
}

/// Number of user keys in the tree.
pub(crate) fn key_count(tree: &sled::Tree) -> usize {
    tree.scan_prefix([DATA_PREFIX]).count()
}

/// Changes ready to be applied, with the checkpoint they lead to. Made from a dirty
/// overlay taken by value after the Kafka commit (`new`), or from the committed layer the
/// applier holds for readers meanwhile (`from_layer`); applied only after the commit.
#[must_use = "a prepared batch does nothing until applied"]
pub(crate) struct PreparedBatch {
    batch: sled::Batch,
}

impl PreparedBatch {
    /// Turns a dirty overlay (encoded key → value, `None` deleted) into one batch ending in
    /// `checkpoint`.
    pub(crate) fn new(
        overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
        checkpoint: Checkpoint,
    ) -> Result<Self> {
        Self::from_layer(&overlay, checkpoint)
    }

    /// As [`new`](Self::new), from a committed layer that stays readable while it is
    /// applied (see [`applier`](super::applier)).
    pub(crate) fn from_layer(
        layer: &HashMap<Vec<u8>, Option<Vec<u8>>>,
        checkpoint: Checkpoint,
    ) -> Result<Self> {
        let mut batch = sled::Batch::default();
        for (k, v) in layer {
            match v {
                Some(v) => batch.insert(data_key(k), v.as_slice()),
                None => batch.remove(data_key(k)),
            }
        }
        let cp = bincode::serde::encode_to_vec(checkpoint, bincode::config::standard()).map_err(
            |e| Error::State {
                op: "encode checkpoint",
                message: e.to_string(),
            },
        )?;
        batch.insert(CHECKPOINT_KEY, cp);
        Ok(PreparedBatch { batch })
    }

    /// Applies the batch atomically.
    ///
    /// # Errors
    /// [`Error::State`] when sled fails.
    pub(crate) fn apply(self, tree: &sled::Tree) -> Result<()> {
        tree.apply_batch(self.batch)
            .map_err(sled_error("apply batch"))
    }
}

/// Writes a restore's records into a tree, one insert each (no checkpoint: the restore
/// writes it last, so a crash in between leaves the old checkpoint, and a restart replays
/// again — replaying a key's records in order again is harmless). Measured on 400k new
/// keys: sled's plain inserts reach 140k records/s, batches of a thousand 110k (larger
/// batches are slower still): a batch buys atomicity, which a restore does not need.
pub(crate) struct RestoreWriter<'t> {
    tree: &'t sled::Tree,
    /// The stored key being built (prefix + key), reused across records.
    key: Vec<u8>,
}

impl<'t> RestoreWriter<'t> {
    /// A writer into `tree`.
    pub(crate) fn new(tree: &'t sled::Tree) -> Self {
        RestoreWriter {
            tree,
            key: Vec::with_capacity(64),
        }
    }

    /// Puts one changelog record: a value, or `None` (a tombstone) to delete the key.
    ///
    /// # Errors
    /// [`Error::State`] when sled fails.
    pub(crate) fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.key.clear();
        self.key.push(DATA_PREFIX);
        self.key.extend_from_slice(key);
        match value {
            Some(v) => self.tree.insert(self.key.as_slice(), v).map(drop),
            None => self.tree.remove(self.key.as_slice()).map(drop),
        }
        .map_err(sled_error("restore"))
    }
}

/// The tree name of one state of one task.
pub(crate) fn tree_name(operator: &str, state: &str, topic: &str, partition: i32) -> String {
    format!("{operator}/{state}/{topic}/{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_checkpoint_apply_together() {
        let dir = std::env::temp_dir().join(format!("exactly-store-test-{}", std::process::id()));
        let db = open(&dir, 1024 * 1024).unwrap();
        let tree = db.open_tree("t").unwrap();
        assert_eq!(checkpoint(&tree).unwrap(), None);
        let mut overlay = HashMap::new();
        overlay.insert(b"a".to_vec(), Some(b"1".to_vec()));
        overlay.insert(b"b".to_vec(), None);
        let cp = Checkpoint::now(10, 3);
        PreparedBatch::new(overlay, cp)
            .unwrap()
            .apply(&tree)
            .unwrap();
        assert_eq!(get(&tree, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(get(&tree, b"b").unwrap(), None);
        assert_eq!(checkpoint(&tree).unwrap(), Some(cp));
        assert_eq!(key_count(&tree), 1);
        // A checkpoint written before `written_at_ms` existed still reads, with no age.
        let legacy =
            bincode::serde::encode_to_vec((7i64, 2i64), bincode::config::standard()).unwrap();
        tree.insert(CHECKPOINT_KEY, legacy).unwrap();
        let old = checkpoint(&tree).unwrap().unwrap();
        assert_eq!(
            (old.input_offset, old.changelog_offset, old.age()),
            (7, 2, None)
        );
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
