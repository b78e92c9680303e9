//! The local sled store: one tree per (state, task), user keys and the checkpoint in the
//! same tree so that one batch applies both atomically.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where a task's local state stands: the input offset it reflects and the changelog offset
/// to replay from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Next input offset after the last committed cycle applied here.
    pub input_offset: i64,
    /// Next changelog offset after the last changelog record applied here.
    pub changelog_offset: i64,
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

/// Opens the worker's state database under `dir`.
///
/// # Errors
/// [`Error::State`] when the directory cannot be opened (for example another worker holds
/// it: give each worker its own `state_dir`).
pub(crate) fn open(dir: &std::path::Path) -> Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .flush_every_ms(Some(200))
        .open()
        .map_err(|e| Error::State {
            op: "open",
            message: format!(
                "{}: {e} (each worker needs its own state_dir)",
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

/// The tree's checkpoint, if any.
///
/// # Errors
/// [`Error::State`] for an unreadable store.
pub fn checkpoint(tree: &sled::Tree) -> Result<Option<Checkpoint>> {
    match tree
        .get(CHECKPOINT_KEY)
        .map_err(sled_error("read checkpoint"))?
    {
        None => Ok(None),
        Some(bytes) => bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .map(|(c, _)| Some(c))
            .map_err(|e| Error::State {
                op: "read checkpoint",
                message: e.to_string(),
            }),
    }
}

/// Number of user keys in the tree.
pub fn key_count(tree: &sled::Tree) -> usize {
    tree.scan_prefix([DATA_PREFIX]).count()
}

/// Changes ready to be applied, with the checkpoint they lead to. Made from a dirty
/// overlay only by taking it by value, and applied only after the Kafka commit.
#[must_use = "a prepared batch does nothing until applied"]
pub struct PreparedBatch {
    batch: sled::Batch,
}

impl PreparedBatch {
    /// Turns a dirty overlay (encoded key → value, `None` deleted) into one batch ending in
    /// `checkpoint`.
    pub(crate) fn new(
        overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
        checkpoint: Checkpoint,
    ) -> Result<Self> {
        let mut batch = sled::Batch::default();
        for (k, v) in overlay {
            match v {
                Some(v) => batch.insert(data_key(&k), v),
                None => batch.remove(data_key(&k)),
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
        let db = open(&dir).unwrap();
        let tree = db.open_tree("t").unwrap();
        assert_eq!(checkpoint(&tree).unwrap(), None);
        let mut overlay = HashMap::new();
        overlay.insert(b"a".to_vec(), Some(b"1".to_vec()));
        overlay.insert(b"b".to_vec(), None);
        let cp = Checkpoint {
            input_offset: 10,
            changelog_offset: 3,
        };
        PreparedBatch::new(overlay, cp)
            .unwrap()
            .apply(&tree)
            .unwrap();
        assert_eq!(get(&tree, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(get(&tree, b"b").unwrap(), None);
        assert_eq!(checkpoint(&tree).unwrap(), Some(cp));
        assert_eq!(key_count(&tree), 1);
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
