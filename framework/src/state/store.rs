//! The local store: a fjall keyspace per worker, one partition ("tree") per (state, task),
//! user keys and the checkpoint in the same tree so that one batch applies both
//! atomically. The only module that names the storage engine.
//!
//! fjall (an LSM tree) replaced sled 0.34 because a restore is a stream of inserts and
//! sled took them at ~190k keys/s from one thread and no faster from more, while fjall
//! takes batches of them at 1.3M keys/s on the same machine (docs/benchmarks.md).

use crate::error::{Error, Result};
use crate::record::now_ms;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

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

fn store_error(op: &'static str) -> impl Fn(fjall::Error) -> Error {
    move |e| Error::State {
        op,
        message: e.to_string(),
    }
}

/// The lock file inside a store directory: held (`flock`) by whoever has the store open.
const LOCK_FILE: &str = "LOCK";

/// Whether `dir` holds a store written by exactly before fjall (sled's files, no fjall
/// version marker).
fn holds_legacy_store(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file() && !dir.join("version").exists()
}

/// What [`Store::open`] does with a store it cannot read: one written by an older exactly
/// (sled), or a damaged one (Kafka Streams' `TaskCorruptedException`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Delete it and start empty: the changelogs rebuild every state it held.
    Delete,
    /// Refuse to open it: without a changelog nothing could rebuild it.
    Refuse,
}

/// Deletes everything in `dir` but the lock file.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The worker's local store: one fjall keyspace in its own directory, held locked while
/// a handle to it or to one of its trees lives. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    /// Declared before the lock: dropped (its threads joined) before the lock is released.
    keyspace: fjall::Keyspace,
    _lock: Arc<File>,
}

impl Store {
    /// Opens the store under `dir` (creating it), with a block cache of `cache_bytes`.
    ///
    /// # Errors
    /// [`Error::State`] when the directory cannot be created, another program holds it
    /// (give each worker its own `state_dir`), or it holds a store that cannot be read
    /// (written by an older exactly, or damaged) and `unreadable` says
    /// [`Unreadable::Refuse`].
    pub(crate) fn open(dir: &Path, cache_bytes: u64, unreadable: Unreadable) -> Result<Store> {
        let failed = |message: String| Error::State {
            op: "open",
            message: format!("{}: {message}", dir.display()),
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let lock = File::create(dir.join(LOCK_FILE)).map_err(|e| failed(e.to_string()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(failed(
                    "the store is open in another program (is a worker running on this directory?)"
                        .into(),
                ))
            }
            Err(TryLockError::Error(e)) => return Err(failed(e.to_string())),
        }
        let opened =
            if holds_legacy_store(dir) {
                Err("holds a state store written by an older exactly (sled), which this one cannot \
                 read"
                .to_string())
            } else {
                open_keyspace(dir, cache_bytes).map_err(|e| e.to_string())
            };
        let keyspace = match (opened, unreadable) {
            (Ok(keyspace), _) => keyspace,
            (Err(why), Unreadable::Refuse) => {
                return Err(failed(format!(
                    "{why}; with state_changelog=false nothing can rebuild it: repair it, keep \
                     running the version that wrote it, or delete the directory (the state \
                     starts empty)"
                )))
            }
            (Err(why), Unreadable::Delete) => {
                tracing::warn!(dir = %dir.display(), %why, "the local store cannot be read: deleting it, the changelogs rebuild its states");
                empty_dir(dir).map_err(|e| failed(e.to_string()))?;
                open_keyspace(dir, cache_bytes).map_err(|e| failed(e.to_string()))?
            }
        };
        Ok(Store {
            keyspace,
            _lock: Arc::new(lock),
        })
    }

    /// Opens (creating) the tree named `name` (see [`tree_name`]).
    ///
    /// # Errors
    /// [`Error::State`] when the store refuses it.
    pub(crate) fn tree(&self, name: &str) -> Result<Tree> {
        let encoded = encode_name(name)?;
        let partition = self
            .keyspace
            .open_partition(&encoded, fjall::PartitionCreateOptions::default())
            .map_err(store_error("open tree"))?;
        Ok(Tree {
            partition,
            store: self.clone(),
        })
    }

    /// The names of every tree in the store.
    pub(crate) fn tree_names(&self) -> Vec<String> {
        self.keyspace
            .list_partitions()
            .iter()
            .map(|p| decode_name(p))
            .collect()
    }

    /// Makes everything written so far durable (fsync).
    ///
    /// # Errors
    /// [`Error::State`] when the disk refuses.
    pub(crate) fn sync(&self) -> Result<()> {
        self.keyspace
            .persist(fjall::PersistMode::SyncAll)
            .map_err(store_error("flush"))
    }
}

/// Opens (creating) the fjall keyspace in `dir`.
fn open_keyspace(dir: &Path, cache_bytes: u64) -> fjall::Result<fjall::Keyspace> {
    fjall::Config::new(dir)
        .cache_size(cache_bytes)
        .max_write_buffer_size(WRITE_BUFFER_BYTES)
        // Every write reaches the OS at once (a killed process loses nothing); the disk in
        // the background.
        .fsync_ms(Some(200))
        .open()
}

/// The memory fjall may hold in memtables (all trees of a worker), at most.
const WRITE_BUFFER_BYTES: u64 = 32 << 20;

/// One state of one task in the store; keeps the store open. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Tree {
    /// Declared before the store: dropped before the store's lock is released.
    partition: fjall::PartitionHandle,
    store: Store,
}

impl Tree {
    /// Deletes every user key and the checkpoint.
    ///
    /// # Errors
    /// [`Error::State`] when the store fails.
    pub(crate) fn clear(&self) -> Result<()> {
        loop {
            let mut batch = self.store.keyspace.batch();
            for k in self.partition.keys().take(CLEAR_CHUNK) {
                batch.remove(&self.partition, k.map_err(store_error("clear"))?);
            }
            if batch.is_empty() {
                return Ok(());
            }
            batch.commit().map_err(store_error("clear"))?;
        }
    }
}

/// Keys deleted per batch by [`Tree::clear`].
const CLEAR_CHUNK: usize = 10_000;

/// fjall names partitions with `[A-Za-z0-9_.#$-]` only, up to 255 characters: `/` becomes
/// `#`, another character `$` and its bytes in hex.
fn encode_name(name: &str) -> Result<String> {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'/' => out.push('#'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => out.push(b as char),
            other => out.push_str(&format!("${other:02x}")),
        }
    }
    if out.len() > 255 {
        return Err(Error::State {
            op: "open tree",
            message: format!(
                "the state `{name}` needs a name of {} characters in the local store, over its \
                 limit of 255: shorten the operator or state name",
                out.len()
            ),
        });
    }
    Ok(out)
}

/// The inverse of [`encode_name`].
fn decode_name(encoded: &str) -> String {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut chars = encoded.bytes();
    while let Some(b) = chars.next() {
        match b {
            b'#' => bytes.push(b'/'),
            b'$' => {
                let hex: Vec<u8> = chars.by_ref().take(2).collect();
                match std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => bytes.push(v),
                    None => return encoded.to_string(),
                }
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).unwrap_or_else(|_| encoded.to_string())
}

/// A committed value lookup (no overlay).
pub(crate) fn get(tree: &Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(tree
        .partition
        .get(data_key(key))
        .map_err(store_error("get"))?
        .map(|v| v.to_vec()))
}

/// Every committed (key, value) of the tree, user keys only, in key order.
pub(crate) fn scan(tree: &Tree) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    tree.partition
        .prefix([DATA_PREFIX])
        .map(|kv| {
            let (k, v) = kv.map_err(store_error("scan"))?;
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
    tree: &Tree,
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
    tree.partition
        .range::<Vec<u8>, _>((lower, upper))
        .take(limit)
        .map(|kv| {
            let (k, v) = kv.map_err(store_error("scan"))?;
            Ok((k[1..].to_vec(), v.to_vec()))
        })
        .collect()
}

/// The tree's checkpoint, if any.
///
/// # Errors
/// [`Error::State`] for an unreadable store.
pub(crate) fn checkpoint(tree: &Tree) -> Result<Option<Checkpoint>> {
    match tree
        .partition
        .get(CHECKPOINT_KEY)
        .map_err(store_error("read checkpoint"))?
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
pub(crate) fn key_count(tree: &Tree) -> usize {
    tree.partition.prefix([DATA_PREFIX]).count()
}

/// Changes ready to be applied, with the checkpoint they lead to. Made from a dirty
/// overlay taken by value after the Kafka commit (`new`), or from the committed layer the
/// applier holds for readers meanwhile (`from_layer`); applied only after the commit.
#[must_use = "a prepared batch does nothing until applied"]
pub(crate) struct PreparedBatch {
    /// Stored key (prefixed) → value (`None`: delete), one entry per key.
    changes: Vec<(fjall::Slice, Option<fjall::Slice>)>,
    checkpoint: Vec<u8>,
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
        // fjall's own byte strings, built once: the batch takes them as they are.
        let changes = layer
            .iter()
            .map(|(k, v)| {
                (
                    fjall::Slice::fused(&[DATA_PREFIX], k),
                    v.as_deref().map(fjall::Slice::new),
                )
            })
            .collect();
        let checkpoint = bincode::serde::encode_to_vec(checkpoint, bincode::config::standard())
            .map_err(|e| Error::State {
                op: "encode checkpoint",
                message: e.to_string(),
            })?;
        Ok(PreparedBatch {
            changes,
            checkpoint,
        })
    }

    /// Applies the batch atomically: every change and the checkpoint, or none of them.
    ///
    /// # Errors
    /// [`Error::State`] when the store fails.
    pub(crate) fn apply(self, tree: &Tree) -> Result<()> {
        let mut batch = tree.store.keyspace.batch();
        // One entry per key: the entries of a fjall batch share one sequence number, so two
        // of one key would have no order.
        for (k, v) in self.changes {
            match v {
                Some(v) => batch.insert(&tree.partition, k, v),
                None => batch.remove(&tree.partition, k),
            }
        }
        batch.insert(&tree.partition, CHECKPOINT_KEY, self.checkpoint);
        batch.commit().map_err(store_error("apply batch"))
    }
}

/// Writes a restore's records into a tree (no checkpoint: the restore writes it last, so a
/// crash in between leaves the old checkpoint, and a restart replays again — replaying a
/// key's records in order again is harmless). Records are folded per key (the last one
/// wins, as the changelog's order says) into batches of [`RESTORE_BATCH`] keys, which a
/// thread of the writer's own commits in order while the restore reads on: fjall takes
/// batches at several times the rate of single inserts, and reading and writing overlap.
pub(crate) struct RestoreWriter {
    tree: Tree,
    /// Stored key (prefixed) → last value read (`None`: a tombstone), not yet handed over.
    /// fjall's own byte strings: short ones are inline, and the batch takes them as they are.
    pending: RestoreBatch,
    /// To the writing thread (started with the first full batch).
    writing: Option<(
        std::sync::mpsc::SyncSender<RestoreBatch>,
        std::thread::JoinHandle<Result<()>>,
    )>,
}

type RestoreBatch = FxHashMap<fjall::Slice, Option<fjall::Slice>>;

/// Keys per restore batch.
const RESTORE_BATCH: usize = 4096;

/// Full batches waiting for the writing thread, at most.
const RESTORE_BATCHES_QUEUED: usize = 2;

fn restore_batch() -> RestoreBatch {
    FxHashMap::with_capacity_and_hasher(RESTORE_BATCH, Default::default())
}

/// Writes one restore batch.
fn write_restore_batch(tree: &Tree, pending: RestoreBatch) -> Result<()> {
    let mut batch = tree.store.keyspace.batch();
    for (k, v) in pending {
        match v {
            Some(v) => batch.insert(&tree.partition, k, v),
            None => batch.remove(&tree.partition, k),
        }
    }
    batch.commit().map_err(store_error("restore"))
}

impl RestoreWriter {
    /// A writer into `tree`.
    pub(crate) fn new(tree: &Tree) -> Self {
        RestoreWriter {
            tree: tree.clone(),
            pending: restore_batch(),
            writing: None,
        }
    }

    /// Puts one changelog record: a value, or `None` (a tombstone) to delete the key.
    ///
    /// # Errors
    /// [`Error::State`] when the store failed a batch written before.
    pub(crate) fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.pending.insert(
            fjall::Slice::fused(&[DATA_PREFIX], key),
            value.map(fjall::Slice::new),
        );
        if self.pending.len() >= RESTORE_BATCH {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Gives the pending batch to the writing thread (starting it).
    fn hand_over(&mut self) -> Result<()> {
        let full = std::mem::replace(&mut self.pending, restore_batch());
        if self.writing.is_none() {
            let (to_writer, batches) = std::sync::mpsc::sync_channel(RESTORE_BATCHES_QUEUED);
            let tree = self.tree.clone();
            let thread = std::thread::Builder::new()
                .name("exactly-restore".into())
                .spawn(move || {
                    for batch in batches {
                        write_restore_batch(&tree, batch)?;
                    }
                    Ok(())
                })
                .map_err(|e| Error::State {
                    op: "restore",
                    message: format!("cannot start the restore's writing thread: {e}"),
                })?;
            self.writing = Some((to_writer, thread));
        }
        let (to_writer, _) = self.writing.as_ref().expect("started above");
        if to_writer.send(full).is_err() {
            // The thread stopped on an error: it says which.
            return self.finish();
        }
        Ok(())
    }

    /// Writes what is pending and waits until every batch is in the store.
    ///
    /// # Errors
    /// [`Error::State`] when the store fails.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let last = std::mem::replace(&mut self.pending, restore_batch());
        let Some((to_writer, thread)) = self.writing.take() else {
            return if last.is_empty() {
                Ok(())
            } else {
                write_restore_batch(&self.tree, last)
            };
        };
        let sent = last.is_empty() || to_writer.send(last).is_ok();
        drop(to_writer);
        let written = thread.join().unwrap_or_else(|_| {
            Err(Error::State {
                op: "restore",
                message: "the restore's writing thread panicked".into(),
            })
        });
        written?;
        if !sent {
            return Err(Error::State {
                op: "restore",
                message: "the restore's writing thread stopped early".into(),
            });
        }
        Ok(())
    }
}

impl Drop for RestoreWriter {
    fn drop(&mut self) {
        // A restore that stopped early (an error) still waits for its thread: the tree
        // must not be written after the restore returned.
        if let Some((to_writer, thread)) = self.writing.take() {
            drop(to_writer);
            let _ = thread.join();
        }
    }
}

/// The tree name of one state of one task.
pub(crate) fn tree_name(operator: &str, state: &str, topic: &str, partition: i32) -> String {
    format!("{operator}/{state}/{topic}/{partition}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "exactly-store-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A store in a [`TempDir`] (closed before the directory goes).
    pub(crate) struct TempStore {
        pub(crate) store: Store,
        _dir: TempDir,
    }

    impl TempStore {
        pub(crate) fn new(name: &str) -> Self {
            let dir = TempDir::new(name);
            let store = open(&dir.0, Unreadable::Refuse).unwrap();
            TempStore { store, _dir: dir }
        }
    }

    fn open(dir: &Path, unreadable: Unreadable) -> Result<Store> {
        Store::open(dir, 1024 * 1024, unreadable)
    }

    /// Whether opening `dir` fails with an [`Error::State`] saying `what`.
    fn refused_saying(dir: &Path, unreadable: Unreadable, what: &str) -> bool {
        match open(dir, unreadable) {
            Err(Error::State { message, .. }) => message.contains(what),
            _ => false,
        }
    }

    #[test]
    fn batch_and_checkpoint_apply_together() {
        let temp = TempStore::new("batch");
        let tree = temp.store.tree("t").unwrap();
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
        tree.partition.insert(CHECKPOINT_KEY, legacy).unwrap();
        let old = checkpoint(&tree).unwrap().unwrap();
        assert_eq!(
            (old.input_offset, old.changelog_offset, old.age()),
            (7, 2, None)
        );
    }

    #[test]
    fn a_restore_keeps_each_key_s_last_record_and_clear_empties_the_tree() {
        let temp = TempStore::new("restore");
        let tree = temp.store.tree("op/counts/words/3").unwrap();
        let mut writer = RestoreWriter::new(&tree);
        // More records than one batch holds, each key several times, some deleted last.
        for round in 0..3u32 {
            for k in 0..5_000u32 {
                let value = (round * 10_000 + k).to_be_bytes();
                let deleted = round == 2 && k % 7 == 0;
                writer
                    .put(&k.to_be_bytes(), (!deleted).then_some(&value[..]))
                    .unwrap();
            }
        }
        writer.finish().unwrap();
        assert_eq!(key_count(&tree), 5_000 - 5_000usize.div_ceil(7));
        assert_eq!(
            get(&tree, &8u32.to_be_bytes()).unwrap(),
            Some((20_008u32).to_be_bytes().to_vec())
        );
        assert_eq!(get(&tree, &7u32.to_be_bytes()).unwrap(), None);
        PreparedBatch::new(HashMap::new(), Checkpoint::now(1, 2))
            .unwrap()
            .apply(&tree)
            .unwrap();
        tree.clear().unwrap();
        assert_eq!(key_count(&tree), 0);
        assert_eq!(checkpoint(&tree).unwrap(), None);
    }

    #[test]
    fn tree_names_survive_the_store_s_character_set() {
        for name in [
            "count/counts/words/3",
            "my op/state#1/topic.with-dots_and_underscores/0",
            "ünïcode/$/t/12",
        ] {
            let encoded = encode_name(name).unwrap();
            assert!(fjall_accepts(&encoded), "{encoded}");
            assert_eq!(decode_name(&encoded), name);
        }
        let long = "x".repeat(300);
        assert!(encode_name(&long).is_err());
        let temp = TempStore::new("names");
        temp.store.tree("a b/c/t/0").unwrap();
        assert_eq!(temp.store.tree_names(), vec!["a b/c/t/0".to_string()]);
    }

    fn fjall_accepts(name: &str) -> bool {
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.#$".contains(c))
    }

    #[test]
    fn a_store_is_held_by_one_handle_at_a_time() {
        let dir = TempDir::new("lock");
        let held = |dir: &Path| refused_saying(dir, Unreadable::Refuse, "open in another program");
        let store = open(&dir.0, Unreadable::Refuse).unwrap();
        assert!(held(&dir.0));
        // A tree keeps its store open after the store's handle is gone.
        let tree = store.tree("t").unwrap();
        drop(store);
        assert!(held(&dir.0));
        drop(tree);
        let reopened = open(&dir.0, Unreadable::Refuse).unwrap();
        assert_eq!(reopened.tree_names(), vec!["t".to_string()]);
    }

    #[test]
    fn a_damaged_store_is_rebuilt_with_a_changelog_and_refused_without() {
        let dir = TempDir::new("damaged");
        open(&dir.0, Unreadable::Refuse).unwrap().tree("t").unwrap();
        std::fs::write(dir.0.join("version"), b"not fjall").unwrap();
        assert!(refused_saying(
            &dir.0,
            Unreadable::Refuse,
            "nothing can rebuild it"
        ));
        let store = open(&dir.0, Unreadable::Delete).unwrap();
        assert!(store.tree_names().is_empty());
    }

    #[test]
    fn an_older_store_is_removed_with_a_changelog_and_refused_without() {
        let dir = TempDir::new("legacy");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join("conf"), b"segment_size: 524288").unwrap();
        std::fs::write(dir.0.join("db"), b"").unwrap();
        assert!(refused_saying(&dir.0, Unreadable::Refuse, "older exactly"));
        let store = open(&dir.0, Unreadable::Delete).unwrap();
        assert!(!dir.0.join("conf").exists());
        assert!(store.tree_names().is_empty());
    }
}
