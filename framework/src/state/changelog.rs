//! Changelog topics: naming, creation, and restoring a task's local state from them.

use super::keyed::{Committed, StateCell};
use super::store::{self, Checkpoint, PreparedBatch};
use crate::config::Config;
use crate::error::{Error, KafkaOp, Result};
use crate::record::TaskId;
use crate::runtime::stats::Stats;
use crate::sink::OutputProducer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What every task's state needs from its worker.
pub(crate) struct StateEnv {
    pub(crate) config: Config,
    pub(crate) output: Arc<OutputProducer>,
    pub(crate) input_partitions: usize,
    pub(crate) stats: Arc<Stats>,
    db: OnceLock<sled::Db>,
    ensured: Mutex<HashSet<String>>,
}

/// The changelog topic of a state: `{application_id}-{operator}-{state}-changelog`.
pub fn topic_name(application_id: &str, operator: &str, state: &str) -> String {
    format!("{application_id}-{operator}-{state}-changelog")
}

impl StateEnv {
    pub(crate) fn new(
        config: Config,
        output: Arc<OutputProducer>,
        input_partitions: usize,
        stats: Arc<Stats>,
    ) -> Self {
        if !config.state_changelog {
            tracing::warn!(
                "state.changelog is off: a partition that moves to another worker starts with empty state"
            );
        }
        StateEnv {
            config,
            output,
            input_partitions,
            stats,
            db: OnceLock::new(),
            ensured: Mutex::new(HashSet::new()),
        }
    }

    fn db(&self) -> Result<&sled::Db> {
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        let dir = self.config.state_dir.join(&self.config.application_id);
        let db = store::open(&dir)?;
        Ok(self.db.get_or_init(|| db))
    }

    /// Makes the cycle's applied batches durable (one fsync per cycle for all tasks), so a
    /// crash restores from this cycle and replays at most the cycles committed after it.
    ///
    /// # Errors
    /// [`Error::State`] when sled cannot flush.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(db) = self.db.get() {
            db.flush().map_err(|e| Error::State {
                op: "flush",
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Creates or checks a changelog topic once per worker.
    fn ensure_changelog(&self, topic: &str) -> Result<()> {
        let mut ensured = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
        if !ensured.contains(topic) {
            crate::admin::ensure_topic(
                &self.config,
                topic,
                self.input_partitions,
                crate::admin::TopicKind::Changelog,
            )?;
            ensured.insert(topic.to_string());
        }
        Ok(())
    }

    /// Opens (creating and restoring as needed) one state of one task whose input resumes
    /// at `start_offset`.
    pub(crate) fn open_cell(
        self: &Arc<Self>,
        task: &TaskId,
        operator: &str,
        state: &str,
        start_offset: i64,
    ) -> Result<StateCell> {
        let tree = self
            .db()?
            .open_tree(store::tree_name(
                operator,
                state,
                &task.topic,
                task.partition,
            ))
            .map_err(|e| Error::State {
                op: "open tree",
                message: e.to_string(),
            })?;
        let changelog = if self.config.state_changelog {
            let topic = topic_name(&self.config.application_id, operator, state);
            self.ensure_changelog(&topic)?;
            Some(topic)
        } else {
            None
        };
        let checkpoint = match &changelog {
            Some(topic) => restore(self, &tree, topic, task.partition, start_offset)?,
            None => store::checkpoint(&tree)?.unwrap_or(Checkpoint {
                input_offset: start_offset,
                changelog_offset: 0,
            }),
        };
        Ok(StateCell {
            committed: Committed::Sled(tree),
            overlay: HashMap::new(),
            changelog: changelog.map(|t| (self.clone(), t, task.partition)),
            checkpoint,
        })
    }
}

/// Brings `tree` up to the committed input offset `start_offset`:
/// - the local checkpoint's input offset equals it → nothing to do;
/// - the checkpoint is behind → replay the changelog from the checkpoint's changelog offset;
/// - no checkpoint, or one ahead of Kafka → clear and replay the changelog from its start.
///
/// Replay reads `read_committed` up to the partition's high watermark (so it waits for a
/// previous owner's open transaction to end), and writes the records and the new checkpoint
/// in one batch. Returns the new checkpoint.
///
/// # Errors
/// [`Error::State`] when the store fails or the changelog cannot be read to its end within
/// twice the transaction timeout plus a minute.
pub(crate) fn restore(
    env: &StateEnv,
    tree: &sled::Tree,
    topic: &str,
    partition: i32,
    start_offset: i64,
) -> Result<Checkpoint> {
    let started = Instant::now();
    let local = store::checkpoint(tree)?;
    let from = match local {
        Some(cp) if cp.input_offset == start_offset => {
            tracing::info!(
                topic,
                partition,
                ?cp,
                "local state matches the committed offset: no replay"
            );
            env.stats.restores.fetch_add(1, Ordering::Relaxed);
            env.stats
                .restore_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            return Ok(cp);
        }
        Some(cp) if cp.input_offset < start_offset => cp.changelog_offset,
        _ => {
            tree.clear().map_err(|e| Error::State {
                op: "clear",
                message: e.to_string(),
            })?;
            0
        }
    };
    let (_, hw) = env
        .output
        .producer
        .client()
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
    let mut overlay: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let mut replayed = 0u64;
    if hw > from {
        let consumer: BaseConsumer = env
            .config
            .client_config(true)
            .set("group.id", format!("{}-restore", env.config.application_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
        let deadline =
            Duration::from_millis(2 * env.config.transaction_timeout_ms) + Duration::from_secs(60);
        loop {
            if let Some(polled) = consumer.poll(Duration::from_millis(100)) {
                let m = polled.map_err(|e| Error::kafka(KafkaOp::Poll, e))?;
                if let Some(k) = m.key() {
                    overlay.insert(k.to_vec(), m.payload().map(<[u8]>::to_vec));
                    replayed += 1;
                    if m.offset() + 1 < hw && replayed % 1_000 != 0 {
                        // Positions are checked only now and then: it is a costly call.
                        continue;
                    }
                    if replayed % 100_000 == 0 {
                        tracing::info!(
                            topic,
                            partition,
                            replayed,
                            at = m.offset(),
                            to = hw,
                            "restoring"
                        );
                    }
                }
            }
            let position = consumer
                .position()
                .ok()
                .and_then(|p| p.find_partition(topic, partition).map(|e| e.offset()));
            if matches!(position, Some(Offset::Offset(o)) if o >= hw) {
                break;
            }
            if started.elapsed() > deadline {
                return Err(Error::State {
                    op: "restore",
                    message: format!(
                        "changelog {topic}/{partition} not readable to its end ({hw}) within {deadline:?}: position {position:?}"
                    ),
                });
            }
        }
    }
    let cp = Checkpoint {
        input_offset: start_offset,
        changelog_offset: hw.max(from),
    };
    PreparedBatch::new(overlay, cp)?.apply(tree)?;
    env.stats.restores.fetch_add(1, Ordering::Relaxed);
    env.stats
        .restored_records
        .fetch_add(replayed, Ordering::Relaxed);
    metrics::counter!("exactly_restored_records_total").increment(replayed);
    let took = started.elapsed();
    env.stats
        .restore_nanos
        .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    tracing::info!(
        topic,
        partition,
        from,
        to = hw,
        replayed,
        ?took,
        "state restored from the changelog"
    );
    Ok(cp)
}
