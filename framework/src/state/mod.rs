//! Keyed operator state: a dirty overlay in memory, the local store for what is committed, and a
//! compacted changelog topic in Kafka that makes it portable.
//!
//! - An operator asks its [`Context`](crate::Context) for a typed handle,
//!   `ctx.keyed_state(&StateDescriptor::<String, u64>::new("counts"))`, in `on_assign`.
//! - `get`/`put`/`delete`/`update` read through and write into the task's dirty overlay;
//!   the store still holds the last committed state.
//! - Commit cycle step 2: the last value of every dirty key (a tombstone for a delete) goes
//!   to the changelog partition of the task, in the open transaction.
//! - Step 5, only after the Kafka commit: the overlay becomes a `PreparedBatch`
//!   (taken by value) and is applied to the store in one atomic batch with the checkpoint
//!   `{input offset, changelog offset}` — with a changelog, by the worker's `applier`
//!   thread while the next cycle runs (reads see the committed layer until it is in the store).
//!   An abort drops the overlay.
//! - When a task starts (`restore`): the local checkpoint matches the committed input
//!   offset → use the store as is; otherwise replay the changelog (`read_committed`) from the
//!   checkpoint's changelog offset, or rebuild from its start (see docs/state.md).
//!
//! `manager` holds the worker's store and opens states; `changelog` names the topics and
//! writes them; `restore` brings a store up to date; `store` is the local store (fjall); `keyed` the typed
//! handles and the overlay; `applier` writes committed overlays to the store off the
//! processing thread; `standby` keeps warm copies of partitions other workers own;
//! `queryable` tells the query server which states this worker holds.

pub(crate) mod applier;
pub mod changelog;
pub(crate) mod keyed;
pub(crate) mod manager;
pub(crate) mod queryable;
pub(crate) mod restore;
pub(crate) mod standby;
pub(crate) mod store;

pub use keyed::{KeyedState, StateDescriptor};
pub use store::Checkpoint;

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// One state of one task as stored locally, for debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSummary {
    /// `operator/state/topic/partition`.
    pub name: String,
    /// The local checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Number of keys.
    pub keys: usize,
}

/// The local stores of every worker of `application_id` under `state_dir` (one per
/// instance directory, see [`crate::instance`]).
fn open_existing(state_dir: &Path, application_id: &str) -> Result<Vec<store::Store>> {
    let dir = state_dir.join(application_id);
    if !dir.exists() {
        return Err(Error::State {
            op: "inspect",
            message: format!("{} does not exist", dir.display()),
        });
    }
    crate::instance::all_dirs(state_dir, application_id)?
        .into_iter()
        .map(|d| d.join(STORE_DIR))
        .filter(|d| d.exists())
        // A store that cannot be read is left for the worker to handle (it knows whether a
        // changelog can rebuild it): here it is refused with a message saying so.
        .map(|d| store::Store::open(&d, 1024 * 1024, store::Unreadable::Refuse))
        .collect()
}

/// The local store's directory inside a worker's instance directory.
pub(crate) const STORE_DIR: &str = "store";

/// Lists every local state of `application_id` under `state_dir` (all its workers' stores)
/// with its checkpoint and key count. The workers that own the directories must be stopped.
///
/// # Errors
/// [`Error::State`] when the directory is missing or a store is held by a running worker.
pub fn inspect(state_dir: &Path, application_id: &str) -> Result<Vec<StateSummary>> {
    let mut out = Vec::new();
    for db in open_existing(state_dir, application_id)? {
        for name in db.tree_names() {
            let tree = db.tree(&name)?;
            out.push(StateSummary {
                checkpoint: store::checkpoint(&tree)?,
                keys: store::key_count(&tree),
                name,
            });
        }
    }
    Ok(out)
}

/// Reads the committed values of one state over all local partitions, decoded as `K → V`.
/// The worker that owns the directory must be stopped.
///
/// # Errors
/// [`Error::State`] when the store cannot be opened or a value does not decode.
pub fn read_committed_state<K, V>(
    state_dir: &Path,
    application_id: &str,
    operator: &str,
    state: &str,
) -> Result<BTreeMap<K, V>>
where
    K: DeserializeOwned + Ord,
    V: DeserializeOwned,
{
    let prefix = format!("{operator}/{state}/");
    let mut out = BTreeMap::new();
    // Several workers may have held a partition: the one whose checkpoint is furthest
    // along has its committed state.
    let mut best: BTreeMap<Vec<u8>, (i64, store::Tree)> = BTreeMap::new();
    for db in open_existing(state_dir, application_id)? {
        for name in db.tree_names() {
            if !name.starts_with(&prefix) {
                continue;
            }
            let tree = db.tree(&name)?;
            let at = store::checkpoint(&tree)?.map_or(-1, |c| c.input_offset);
            if best.get(name.as_bytes()).is_none_or(|(b, _)| at > *b) {
                best.insert(name.into_bytes(), (at, tree));
            }
        }
    }
    for (_, (_, tree)) in best {
        for (k, v) in store::scan(&tree)? {
            let decode_error = |e: bincode::error::DecodeError| Error::State {
                op: "decode",
                message: e.to_string(),
            };
            let (k, _) = bincode::serde::decode_from_slice(&k, bincode::config::standard())
                .map_err(decode_error)?;
            let (v, _) = bincode::serde::decode_from_slice(&v, bincode::config::standard())
                .map_err(decode_error)?;
            out.insert(k, v);
        }
    }
    Ok(out)
}
