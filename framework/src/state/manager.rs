//! The worker's state manager: its local store, the changelog topics it has checked, and
//! the opening of one state of one task (restoring it as [`restore`](super::restore)
//! decides).

use super::applier::Applier;
use super::changelog::{topic_name, ChangelogWriter};
use super::keyed::{Committed, StateCell};
use super::restore::restore;
use super::standby;
use super::store::{self, Checkpoint};
use crate::config::Config;
use crate::error::{Error, KafkaOp, Result};
use crate::observability::Stats;
use crate::producer::WorkerProducer;
use crate::record::TaskId;
use crate::state::queryable::{QueryCodec, QueryRegistry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What every task's state needs from its worker (as Kafka Streams'
/// `ProcessorStateManager`, for all the tasks of a worker).
pub(crate) struct StateManager {
    pub(crate) config: Config,
    pub(crate) output: Arc<WorkerProducer>,
    pub(crate) input_partitions: usize,
    pub(crate) stats: Arc<Stats>,
    /// The worker's local store directory (`{instance dir}/store`).
    store_dir: PathBuf,
    db: OnceLock<store::Store>,
    /// Applies committed overlays to the store off the processing thread.
    applier: OnceLock<Applier>,
    /// Changelog topics this worker has checked, with their `delete.retention.ms`.
    ensured: Mutex<HashMap<String, Duration>>,
    /// Reads watermarks `read_uncommitted`: the real end of a log, not its stable offset.
    watermarks: OnceLock<BaseConsumer>,
    /// The worker's one restore consumer (created on first use, kept connected): each
    /// restore assigns it the changelog partition it replays.
    restorer: Mutex<Option<BaseConsumer>>,
    /// The query server's view of this worker's states (with a query server).
    queries: Option<Arc<QueryRegistry>>,
    /// What this worker's standby shares with its tasks.
    standby_shared: Arc<standby::Shared>,
    /// The standby thread (started with the first state, when `standby_replicas` > 0).
    standby: OnceLock<standby::Standby>,
}

impl StateManager {
    pub(crate) fn new(
        config: Config,
        output: Arc<WorkerProducer>,
        input_partitions: usize,
        stats: Arc<Stats>,
        store_dir: PathBuf,
        queries: Option<Arc<QueryRegistry>>,
    ) -> Self {
        if !config.state_changelog {
            tracing::warn!(
                "state.changelog is off: a partition that moves to another worker starts with empty state"
            );
        }
        StateManager {
            config,
            output,
            input_partitions,
            stats,
            store_dir,
            db: OnceLock::new(),
            applier: OnceLock::new(),
            ensured: Mutex::new(HashMap::new()),
            watermarks: OnceLock::new(),
            restorer: Mutex::new(None),
            queries,
            standby_shared: Arc::default(),
            standby: OnceLock::new(),
        }
    }

    /// The worker's applier (started on first use).
    fn applier(&self) -> Result<Applier> {
        if let Some(a) = self.applier.get() {
            return Ok(a.clone());
        }
        let started = Applier::start()?;
        Ok(self.applier.get_or_init(|| started).clone())
    }

    fn db(&self) -> Result<&store::Store> {
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        // A store it cannot read is a cache the changelogs can rebuild, when there are any.
        let unreadable = if self.config.state_changelog {
            store::Unreadable::Delete
        } else {
            store::Unreadable::Refuse
        };
        let db = store::Store::open(
            &self.store_dir,
            self.config.state_store_cache_bytes,
            unreadable,
        )?;
        Ok(self.db.get_or_init(|| db))
    }

    /// Without a changelog: makes the cycle's applied batches durable (one fsync per cycle
    /// for all tasks), since nothing could rebuild a lost one. With a changelog it does
    /// nothing: every write reaches the OS at once and the disk in the background (every
    /// 200 ms), and a batch lost in a crash only leaves an older checkpoint, from which the
    /// changelog replays.
    ///
    /// # Errors
    /// [`Error::State`] when the store cannot flush.
    pub(crate) fn flush(&self) -> Result<()> {
        if self.config.state_changelog {
            return Ok(());
        }
        if let Some(db) = self.db.get() {
            db.sync()?;
        }
        Ok(())
    }

    /// Creates or checks a changelog topic once per worker; returns its
    /// `delete.retention.ms`.
    pub(crate) fn ensure_changelog(&self, topic: &str) -> Result<Duration> {
        let mut ensured = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(retention) = ensured.get(topic) {
            return Ok(*retention);
        }
        let info = crate::topics::ensure_topic(
            &self.config,
            topic,
            self.input_partitions,
            crate::topics::TopicKind::Changelog,
        )?;
        ensured.insert(topic.to_string(), info.delete_retention);
        Ok(info.delete_retention)
    }

    /// The low and high watermarks of a changelog partition (read_uncommitted: the high
    /// watermark counts records of open transactions).
    pub(crate) fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        let client = match self.watermarks.get() {
            Some(c) => c,
            None => {
                let c: BaseConsumer = self
                    .config
                    .client_config(true)?
                    .set("isolation.level", "read_uncommitted")
                    .set("enable.auto.commit", "false")
                    .create()
                    .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
                self.watermarks.get_or_init(|| c)
            }
        };
        client
            .fetch_watermarks(topic, partition, Duration::from_secs(30))
            .map_err(|e| Error::kafka(KafkaOp::Metadata, e))
    }

    /// Runs `f` with the worker's restore consumer (`read_committed`, large fetches,
    /// `auto.offset.reset=error`, partition EOF events; no group membership, no commits).
    ///
    /// # Errors
    /// [`Error::Kafka`] when the consumer cannot be created.
    pub(crate) fn with_restore_consumer<T>(&self, f: impl FnOnce(&BaseConsumer) -> T) -> Result<T> {
        let mut guard = self.restorer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let c: BaseConsumer = self
                .config
                .client_config(true)?
                // librdkafka assigns partitions only to a consumer with a group (it looks
                // up the group's coordinator: GROUP DESCRIBE); it never joins or commits.
                .set("group.id", restore_group(&self.config.application_id))
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "error")
                .set("enable.partition.eof", "true")
                // A restore reads a finite range and stops at its end: a fetch that finds
                // nothing new must come back at once, not wait the default 500 ms for data
                // (the next restore's fetch waits behind it on the same connection).
                .set("fetch.wait.max.ms", RESTORE_FETCH_WAIT_MS)
                .set("max.partition.fetch.bytes", "16777216")
                .set("fetch.max.bytes", "67108864")
                .set("queued.max.messages.kbytes", "131072")
                .set(
                    "fetch.queue.backoff.ms",
                    crate::config::FETCH_QUEUE_BACKOFF_MS,
                )
                .create()
                .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
            *guard = Some(c);
        }
        Ok(f(guard.as_ref().expect("created above")))
    }

    /// Opens (creating and restoring as needed) one state of one task whose input resumes
    /// at the committed offset `start_offset`. With a query server and a `query` codec,
    /// queries see the state as restoring until it is open, then its committed values.
    pub(crate) fn open_cell(
        self: &Arc<Self>,
        task: &TaskId,
        operator: &str,
        state: &str,
        start_offset: i64,
        query: Option<Arc<dyn QueryCodec>>,
    ) -> Result<StateCell> {
        let tree = self.db()?.tree(&store::tree_name(
            operator,
            state,
            &task.topic,
            task.partition,
        ))?;
        let registration = match (&self.queries, query) {
            (Some(registry), Some(codec)) => Some(registry.open(
                operator,
                state,
                &task.topic,
                self.input_partitions,
                task.partition,
                codec,
            )),
            _ => None,
        };
        let mut active = None;
        let (changelog, checkpoint) = if self.config.state_changelog {
            let topic = topic_name(&self.config.application_id, operator, state);
            let retention = self.ensure_changelog(&topic)?;
            if self.config.standby_replicas > 0 {
                // From here on the standby leaves this partition's tree to the task.
                active = Some(self.standby_shared.activate(
                    standby::Target {
                        changelog: topic.clone(),
                        operator: operator.to_string(),
                        state: state.to_string(),
                        task_topic: task.topic.to_string(),
                    },
                    task.partition,
                ));
                self.start_standby()?;
            }
            let cp = restore(self, &tree, &topic, task.partition, start_offset, retention)?;
            (Some(topic), cp)
        } else {
            (
                None,
                local_only(self, &tree, task, operator, state, start_offset)?,
            )
        };
        let applier = match &changelog {
            Some(_) => Some(self.applier()?),
            None => None,
        };
        if let Some(r) = &registration {
            r.ready(tree.clone());
        }
        let mut cell = StateCell::new(
            Committed::Store(tree),
            changelog.map(|topic| ChangelogWriter::new(self.output.clone(), topic, task.partition)),
            checkpoint,
            applier,
        );
        cell.registration = registration;
        cell.active = active;
        Ok(cell)
    }

    /// Makes a state a standby target before any task of this worker opens it (a state its
    /// pipeline declares, `Stream::serves_state`), and starts the standby. Does nothing
    /// unless `standby_replicas` > 0.
    ///
    /// # Errors
    /// As [`open_cell`](Self::open_cell) when the store or the standby consumer fails.
    pub(crate) fn add_standby_target(
        &self,
        operator: &str,
        state: &str,
        task_topic: &str,
    ) -> Result<()> {
        if self.config.standby_replicas == 0 || !self.config.state_changelog {
            return Ok(());
        }
        self.standby_shared.add_target(standby::Target {
            changelog: topic_name(&self.config.application_id, operator, state),
            operator: operator.to_string(),
            state: state.to_string(),
            task_topic: task_topic.to_string(),
        });
        self.start_standby()
    }

    /// Starts the standby thread once.
    fn start_standby(&self) -> Result<()> {
        if self.standby.get().is_some() {
            return Ok(());
        }
        let started = standby::Standby::start(
            &self.config,
            self.db()?.clone(),
            self.standby_shared.clone(),
            self.input_partitions,
            self.stats.clone(),
        )?;
        let _ = self.standby.set(started);
        Ok(())
    }

    /// Records this worker's member id, by which the standby ranks the group's members.
    pub(crate) fn set_member_id(&self, id: Option<String>) {
        self.standby_shared.set_member_id(id);
    }
}

/// How long the broker may hold a restore consumer's fetch that finds no new records.
const RESTORE_FETCH_WAIT_MS: &str = "10";

/// The group id of a worker's restore consumer.
pub(crate) fn restore_group(application_id: &str) -> String {
    format!("{application_id}-restore")
}

/// Without a changelog the local store is all there is: it must stand exactly at the
/// committed offset (or be empty, for a partition new to this worker).
fn local_only(
    manager: &StateManager,
    tree: &store::Tree,
    task: &TaskId,
    operator: &str,
    state: &str,
    start_offset: i64,
) -> Result<Checkpoint> {
    match store::checkpoint(tree)? {
        Some(cp) if cp.input_offset == start_offset => Ok(cp),
        Some(cp) => Err(Error::State {
            op: "open without a changelog",
            message: format!(
                "the local state `{operator}/{state}` of {task} stands at input offset {}, but the group's \
                 committed offset is {start_offset}; with state_changelog=false nothing can replay the \
                 difference (the worker crashed between a commit and its local apply, or the partition \
                 was processed elsewhere). Turn state_changelog on, or delete {} to start this state empty",
                cp.input_offset,
                manager.store_dir.display()
            ),
        }),
        None => Ok(Checkpoint::now(start_offset, 0)),
    }
}
