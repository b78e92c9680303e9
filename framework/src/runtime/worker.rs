//! The worker thread: one consumer, one producer, the poll loop and the rebalance callbacks.
//!
//! librdkafka runs rebalance callbacks synchronously inside `poll`, and every transactional
//! call blocks. The worker therefore owns a dedicated OS thread that polls a `BaseConsumer`;
//! the callbacks may block (commit) without stalling any async runtime.

use crate::commit::kafka::{KafkaGroup, KafkaTransactions};
use crate::commit::{with_retries, Committer, Outcome};
use crate::config::{Config, Guarantee, OnPanic};
use crate::error::{Action, Error, KafkaOp, Result};
use crate::instance::Instance;
use crate::observability::Stats;
use crate::pipeline::{BadRecords, Pipeline, TaskSetup};
use crate::poison::{self, Poison};
use crate::producer::{DeliveryContext, WorkerProducer};
use crate::record::TaskId;
use crate::runtime::consumer;
use crate::runtime::task::{Task, Tasks};
use crate::state::manager::StateManager;
use crate::state::queryable::QueryRegistry;
use crate::topics;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Everything the poll loop and the rebalance callbacks share.
pub(crate) struct WorkerState {
    /// Each stage's resolved input topic and chain builder.
    builds: Vec<(String, Arc<crate::pipeline::BuildTask>)>,
    /// The stages' inputs that are internal (repartition) topics: purged once committed.
    internal: HashSet<String>,
    output: Arc<WorkerProducer>,
    state: Arc<StateManager>,
    committer: Committer<KafkaTransactions>,
    tasks: Tasks,
    stats: Arc<Stats>,
    poison: Arc<Poison>,
    config: Config,
    /// A fatal error raised inside a callback, returned by the loop.
    fatal: Option<Error>,
    /// Cycles aborted since the last commit; past `max_retries` the worker stops.
    aborts_in_a_row: u32,
    /// For purging committed repartition records (created on first use).
    admin: Option<AdminClient<DefaultClientContext>>,
    last_purge: Instant,
    /// The pipeline's policy for records it cannot process.
    bad_records: BadRecords,
    /// Bad records found in aborted cycles, by task and offset, with their error: skipped or
    /// dead-lettered when the replay reaches them (dropped once committed past).
    to_divert: HashMap<TaskId, BTreeMap<i64, String>>,
    /// Input topics of the records diverted in the open cycle (counted when it commits).
    diverted_in_cycle: Vec<Arc<str>>,
    /// Whether a query server reads this worker's states (tasks then start when idle).
    serves_queries: bool,
    last_idle_start: Instant,
}

/// What to do with a delivered message.
enum Delivery {
    /// Process it in its task.
    Process,
    /// Already processed (or committed) in its task: skipped.
    Skip,
}

impl WorkerState {
    fn timeout(&self) -> Duration {
        self.config.kafka_call_timeout()
    }

    /// Processes one input record in its task.
    fn process<C: ConsumerContext + 'static>(
        &mut self,
        m: &BorrowedMessage<'_>,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        // Linear over a handful of tasks: no allocation per record.
        let known = self
            .tasks
            .values()
            .find(|t| t.id.partition == partition && &*t.id.topic == topic)
            .map(|t| (t.next_offset, t.committed));
        let delivery = match known {
            Some((next, committed)) if offset < next => {
                self.redelivered(m, next, committed, consumer)?
            }
            Some(_) => Delivery::Process,
            None => self.start_task(m, consumer)?,
        };
        if let Delivery::Skip = delivery {
            return Ok(());
        }
        let Some(task) = self
            .tasks
            .values_mut()
            .find(|t| t.id.partition == partition && &*t.id.topic == topic)
        else {
            return Err(Error::Worker(format!("no task for {topic}/{partition}")));
        };
        // Marked before the transaction begins, so that a failed begin rewinds to here.
        if task.cycle_start.is_none() {
            task.cycle_start = Some(offset);
        }
        self.committer.before_record()?;
        // Empty unless a bad record was found: no lookup on the per-record path otherwise.
        let divert = if self.to_divert.is_empty() {
            None
        } else {
            self.to_divert.get(&task.id).and_then(|d| d.get(&offset))
        };
        let pushed = match divert {
            Some(reason) => {
                crate::pipeline::divert_record(&self.bad_records, &*self.output, topic, m, reason)
            }
            None => task.chain.push_message(m),
        };
        // A panic is final even if an operator swallowed the error its collector returned.
        if let Some(panic) = self.poison.error() {
            return Err(panic);
        }
        match pushed {
            Ok(()) => {}
            Err(err) if err.is_bad_record() && self.bad_records != BadRecords::Fail => {
                // Its outputs so far are in the open transaction: abort, and replay the
                // cycle with this record diverted.
                let id = task.id.clone();
                tracing::warn!(task = %id, offset, error = %err, policy = self.bad_records.label(), "a bad record: aborting its cycle to replay it without the record");
                self.to_divert
                    .entry(id)
                    .or_default()
                    .insert(offset, err.to_string());
                self.diverted_in_cycle.clear();
                return self.abort(consumer, &BTreeSet::new());
            }
            Err(err) => return Err(err),
        }
        if divert.is_some() {
            self.diverted_in_cycle.push(task.id.topic.clone());
        }
        task.next_offset = offset + 1;
        self.stats.records_in.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A message below its task's next offset was already processed in this task (a rewind
    /// after an abort moves the next offset back, so replays pass): the consumer delivered
    /// it again. Processing it again would put a duplicate into the transaction, so it is
    /// skipped, and the partition's position is moved to the next offset, so that a fetch
    /// that restarted from a stale position is corrected at once rather than record by
    /// record. A message below what the task had committed is checked against the log
    /// first: if the log now ends below it, the partition was truncated or recreated, and
    /// skipping would lose new records silently.
    fn redelivered<C: ConsumerContext + 'static>(
        &mut self,
        m: &BorrowedMessage<'_>,
        next: i64,
        committed: i64,
        consumer: &BaseConsumer<C>,
    ) -> Result<Delivery> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        if offset < committed {
            let (_, end) = consumer
                .fetch_watermarks(topic, partition, self.timeout())
                .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
            if end < committed {
                return Err(Error::LogTruncated {
                    topic: topic.to_string(),
                    partition,
                    committed,
                    end,
                });
            }
        }
        tracing::warn!(topic, partition, offset, next, "skipping a message the consumer delivered again; moving the position to the next offset");
        self.stats.duplicate_delivery();
        consumer
            .seek(topic, partition, Offset::Offset(next), self.timeout())
            .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
        Ok(Delivery::Skip)
    }

    /// Starts the task of a newly delivered partition: commits the open cycle first (a
    /// task's state is restored outside any transaction that has produced), fetches the
    /// group's committed offset, checks that the log still holds it, and opens every
    /// operator's state (restoring it) before the first record.
    fn start_task<C: ConsumerContext + 'static>(
        &mut self,
        m: &BorrowedMessage<'_>,
        consumer: &BaseConsumer<C>,
    ) -> Result<Delivery> {
        if self.committer.is_open() {
            self.commit(consumer)?;
        }
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let started = self.try_start_task(m, consumer);
        if started.is_err() {
            // Nothing of this partition was processed: deliver this message again.
            let _ = consumer.seek(topic, partition, Offset::Offset(offset), self.timeout());
        }
        started
    }

    fn try_start_task<C: ConsumerContext + 'static>(
        &mut self,
        m: &BorrowedMessage<'_>,
        consumer: &BaseConsumer<C>,
    ) -> Result<Delivery> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let id = TaskId {
            topic: Arc::from(topic),
            partition,
        };
        let Some(build) = self.build_for(topic) else {
            return Err(Error::Worker(format!(
                "a record of {topic}, which no stage reads"
            )));
        };
        let committed = committed_offset(consumer, topic, partition, self.timeout())?;
        if let Some(c) = committed {
            if offset > c {
                // A gap: transaction markers, or records deleted before they were processed.
                let (low, _) = consumer
                    .fetch_watermarks(topic, partition, self.timeout())
                    .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
                if low > c {
                    return Err(Error::RecordsDeleted {
                        topic: topic.to_string(),
                        partition,
                        committed: c,
                        log_start: low,
                    });
                }
            }
        }
        let start = committed.unwrap_or(offset);
        tracing::info!(task = %id, offset, committed = ?committed, "task started");
        let next = offset.max(start);
        self.open_task(id, &*build, start, next)?;
        if offset < next {
            return self.redelivered(m, next, start, consumer);
        }
        Ok(Delivery::Process)
    }

    /// Runs a commit cycle; a fatal error is returned, an abort is logged.
    fn commit<C: ConsumerContext + 'static>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let mut group = KafkaGroup {
            consumer,
            timeout: self.timeout(),
        };
        match self.committer.commit_cycle(&mut self.tasks, &mut group)? {
            Outcome::Empty => Ok(()),
            Outcome::Committed => {
                self.aborts_in_a_row = 0;
                self.output.refresh_retention_floor();
                for topic in self.diverted_in_cycle.drain(..) {
                    metrics::counter!(
                        crate::observability::metric::BAD_RECORDS,
                        "topic" => topic.to_string(),
                        "policy" => self.bad_records.label()
                    )
                    .increment(1);
                }
                let tasks = &self.tasks;
                self.to_divert.retain(|id, offsets| {
                    let committed = tasks.get(id).map_or(i64::MAX, |t| t.committed);
                    offsets.retain(|o, _| *o >= committed);
                    !offsets.is_empty()
                });
                self.state.flush()?;
                self.purge_committed();
                Ok(())
            }
            Outcome::Aborted(err) => {
                self.diverted_in_cycle.clear();
                self.aborted(err)
            }
        }
    }

    /// Fires the tasks' wall-clock timers that are due, each inside the open cycle (opened
    /// for an idle task), so that what they emit and write commits like a record's effects.
    fn fire_wall_clock(&mut self) -> Result<()> {
        let now = Instant::now();
        for task in self.tasks.values_mut() {
            if !task.chain.wall_clock_due(now) {
                continue;
            }
            if task.cycle_start.is_none() {
                task.cycle_start = Some(task.next_offset);
            }
            self.committer.before_record()?;
            let fired = task.chain.fire_wall_clock(now);
            if let Some(panic) = self.poison.error() {
                return Err(panic);
            }
            fired?;
        }
        Ok(())
    }

    /// When idle, with a query server: starts the tasks of assigned partitions that have
    /// had no record yet, so that their states are open (restored) and served — a task
    /// otherwise starts on its partition's first record, and a member that took over a
    /// partition whose input had all been processed would never open its state. At most
    /// once a second; a failure is logged and tried again.
    fn start_idle_tasks<C: ConsumerContext + 'static>(&mut self, consumer: &BaseConsumer<C>) {
        if !self.serves_queries || self.last_idle_start.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_idle_start = Instant::now();
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let idle: Vec<(String, i32)> = assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .filter(|(topic, partition)| {
                !self
                    .tasks
                    .keys()
                    .any(|id| &*id.topic == topic && id.partition == *partition)
            })
            .collect();
        for (topic, partition) in idle {
            if let Err(err) = self.start_idle_task(&topic, partition, consumer) {
                tracing::warn!(topic, partition, %err, "could not start an idle task; trying again later");
                return;
            }
        }
    }

    fn start_idle_task<C: ConsumerContext + 'static>(
        &mut self,
        topic: &str,
        partition: i32,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        if self.committer.is_open() {
            // As for a task started by a record: no restore in a transaction that produced.
            self.commit(consumer)?;
        }
        let Some(build) = self.build_for(topic) else {
            return Ok(());
        };
        let committed = committed_offset(consumer, topic, partition, self.timeout())?;
        let (low, _) = consumer
            .fetch_watermarks(topic, partition, self.timeout())
            .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
        let start = match committed {
            Some(c) if low > c => {
                return Err(Error::RecordsDeleted {
                    topic: topic.to_string(),
                    partition,
                    committed: c,
                    log_start: low,
                })
            }
            Some(c) => c,
            None => low,
        };
        let id = TaskId {
            topic: Arc::from(topic),
            partition,
        };
        tracing::info!(task = %id, committed = ?committed, start, "task started before its first record (its state is served to queries)");
        self.open_task(id, &*build, start, start)
    }

    /// The chain builder of the stage that reads `topic`.
    fn build_for(&self, topic: &str) -> Option<Arc<crate::pipeline::BuildTask>> {
        self.builds
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, b)| b.clone())
    }

    /// Builds a task's chain (its operators open and restore their state) for input that
    /// resumes at the committed offset `start`, the next record expected at `next`.
    fn open_task(
        &mut self,
        id: TaskId,
        build: &crate::pipeline::BuildTask,
        start: i64,
        next: i64,
    ) -> Result<()> {
        let mut chain = build(&TaskSetup {
            id: id.clone(),
            application_id: Arc::from(self.config.application_id.as_str()),
            output: self.output.clone(),
            state: Some(self.state.clone()),
            start_offset: start,
            poison: self.poison.clone(),
        })?;
        chain.assign()?;
        self.tasks.insert(
            id.clone(),
            Task {
                id,
                chain,
                cycle_start: None,
                next_offset: next,
                committed: start,
            },
        );
        Ok(())
    }

    /// Now and then (after a commit, or when idle): deletes the committed records of
    /// repartition inputs.
    fn purge_committed(&mut self) {
        let every = Duration::from_millis(self.config.repartition_purge_interval_ms);
        if self.internal.is_empty() || self.last_purge.elapsed() < every {
            return;
        }
        self.last_purge = Instant::now();
        let committed: Vec<(String, i32, i64)> = self
            .tasks
            .values()
            .filter(|t| self.internal.contains(&*t.id.topic) && t.committed > 0)
            .map(|t| (t.id.topic.to_string(), t.id.partition, t.committed))
            .collect();
        if self.admin.is_none() {
            match crate::topics::client(&self.config) {
                Ok(a) => self.admin = Some(a),
                Err(err) => {
                    tracing::warn!(%err, "cannot create the admin client that purges repartition records");
                    return;
                }
            }
        }
        if let Some(admin) = &self.admin {
            crate::topics::purge(admin, &committed);
        }
    }

    /// Counts an aborted cycle; too many in a row turn the last error into a fatal one.
    fn aborted(&mut self, err: Error) -> Result<()> {
        self.aborts_in_a_row += 1;
        if self.aborts_in_a_row > self.config.max_retries {
            return Err(Error::AbortedInARow {
                aborts: self.aborts_in_a_row,
                last: Box::new(err),
            });
        }
        tracing::warn!(%err, in_a_row = self.aborts_in_a_row, "cycle aborted and input rewound; replaying");
        Ok(())
    }

    /// Aborts the open cycle and rewinds every task (except `leaving` ones).
    fn abort<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &BaseConsumer<C>,
        leaving: &BTreeSet<TaskId>,
    ) -> Result<()> {
        let mut group = KafkaGroup {
            consumer,
            timeout: self.timeout(),
        };
        self.committer
            .abort_and_rewind(&mut self.tasks, &mut group, leaving)
    }

    /// A record failed: abortable errors abort and replay the cycle, others stop the worker.
    fn record_failed<C: ConsumerContext + 'static>(
        &mut self,
        err: Error,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        let err = self.committer.explain(KafkaOp::Produce, err);
        if err.action() != Action::Abort {
            return Err(err);
        }
        self.abort(consumer, &BTreeSet::new())?;
        self.aborted(err)
    }

    /// Stops after an error: aborts what is open (before anything else runs). Returns the
    /// error to report.
    fn fail<C: ConsumerContext + 'static>(
        &mut self,
        err: Error,
        consumer: &BaseConsumer<C>,
    ) -> Error {
        if let Err(abort_err) = self.abort(consumer, &BTreeSet::new()) {
            tracing::error!(%abort_err, "could not abort the open transaction");
        }
        err
    }

    /// The revoke half of a rebalance: commit (or abort, when the assignment was lost or
    /// the worker is poisoned), then drop the revoked tasks.
    fn revoke<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &BaseConsumer<C>,
        revoked: &TopicPartitionList,
        poisoned: bool,
    ) {
        let started = Instant::now();
        let leaving: BTreeSet<TaskId> = revoked
            .elements()
            .iter()
            .map(|e| TaskId {
                topic: Arc::from(e.topic()),
                partition: e.partition(),
            })
            .collect();
        let _span = tracing::info_span!(
            "rebalance",
            revoked = leaving.len(),
            lost = consumer.assignment_lost()
        )
        .entered();
        if poisoned {
            // A panic in user code: nothing of the open cycle may commit.
            tracing::warn!("the worker is poisoned by a panic: aborting the open transaction");
            if let Err(e) = self.abort(consumer, &leaving) {
                self.fatal.get_or_insert(e);
            }
        } else if consumer.assignment_lost() {
            // The group has moved on: this transaction can never commit.
            tracing::warn!("assignment lost: aborting the open transaction without committing");
            if let Err(e) = self.abort(consumer, &leaving) {
                self.fatal.get_or_insert(e);
            }
        } else if self.committer.is_open() {
            if let Err(e) = self.commit(consumer) {
                self.fatal.get_or_insert(e);
            }
        }
        for id in &leaving {
            self.to_divert.remove(id);
            if let Some(mut task) = self.tasks.remove(id) {
                task.chain.revoke();
                tracing::info!(task = %id, "task revoked");
            }
        }
        self.stats.partitions.fetch_sub(
            (leaving.len() as u64).min(self.stats.partitions.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        self.stats.rebalanced(started.elapsed());
    }

    /// A consumer error as the worker reports it.
    fn consumer_error(&self, e: KafkaError) -> Error {
        match (&self.config.group_instance_id, e.rdkafka_error_code()) {
            (Some(instance), Some(RDKafkaErrorCode::FencedInstanceId)) => {
                Error::DuplicateInstance {
                    instance: instance.clone(),
                    op: KafkaOp::Poll,
                    reason: e.to_string(),
                }
            }
            _ => Error::kafka(KafkaOp::Poll, e),
        }
    }
}

/// The group's committed offset of one partition (`None`: nothing committed). Under
/// `read_committed`, librdkafka asks for stable offsets (KIP-447): a transaction still
/// completing delays the answer instead of hiding its offsets.
fn committed_offset<C: ConsumerContext + 'static>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = with_retries(3, crate::commit::RETRY_BACKOFF, || {
        consumer
            .committed_offsets(tpl.clone(), timeout)
            .map_err(|e| Error::kafka(KafkaOp::FetchCommitted, e))
    })?;
    Ok(
        match got.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        },
    )
}

/// The consumer context: routes rebalance callbacks to the shared state.
pub(crate) struct WorkerContext {
    state: Arc<Mutex<Option<WorkerState>>>,
    stats: Arc<Stats>,
}

impl ClientContext for WorkerContext {
    /// librdkafka's periodic statistics: publishes the consumer lag of each partition as the
    /// gauge `exactly_partition_lag{topic, partition}`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(
                        crate::observability::metric::PARTITION_LAG,
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // A poisoned lock means a thread panicked holding it: never commit then.
                let (mut guard, lock_poisoned) = match self.state.lock() {
                    Ok(g) => (g, false),
                    Err(p) => (p.into_inner(), true),
                };
                if let Some(state) = guard.as_mut() {
                    let poisoned =
                        lock_poisoned || std::thread::panicking() || state.poison.is_set();
                    state.revoke(consumer, tpl, poisoned);
                }
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                if let Some(st) = lock(&self.state).as_ref() {
                    st.state.set_member_id(
                        crate::commit::kafka::member_and_generation(consumer).map(|(m, _)| m),
                    );
                }
                self.stats
                    .partitions
                    .fetch_add(tpl.count() as u64, Ordering::Relaxed);
                self.stats.rebalances.fetch_add(1, Ordering::Relaxed);
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The producer's `queue.buffering.max.kbytes` unless the user sets it (64 MiB).
const PRODUCER_QUEUE_KBYTES: &str = "65536";

/// The producer's `connections.max.idle.ms` unless the user sets it (see
/// [`create_producer`]): how long a producer stuck in `send_offsets_to_transaction` waits
/// at most before it looks its group coordinator up again.
const PRODUCER_CONNECTIONS_MAX_IDLE_MS: &str = "10000";

fn create_producer(
    config: &Config,
    transactional_id: &str,
    stats: Arc<Stats>,
) -> Result<Arc<WorkerProducer>> {
    let mut c = config.client_config(false)?;
    let user_set = |k: &str| config.kafka.contains_key(k) || config.kafka_producer.contains_key(k);
    if !user_set("queue.buffering.max.kbytes") {
        // librdkafka buffers up to 1 GiB of unsent records by default; past this bound a
        // send waits (the poll loop with it, and the consumer's fetches once its own
        // bounded queue is full): memory stays bounded when output is slower than input.
        c.set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES);
    }
    if !user_set("partitioner") {
        // The Java client's partitioner, so that keys land where Kafka Streams puts them.
        c.set("partitioner", "murmur2_random");
    }
    if !user_set("connections.max.idle.ms") {
        // librdkafka #5511: `send_offsets_to_transaction` waits for a broker state change
        // to look its group coordinator up again, and when the node that coordinated the
        // group is gone from the cluster's metadata none may come (the call blocked for
        // 10 minutes in tests/cluster.rs). Closing idle connections is such a change: a
        // producer stuck in that call sends nothing, so its connections close after this
        // long and the lookup resumes (the Java client closes idle connections too).
        c.set("connections.max.idle.ms", PRODUCER_CONNECTIONS_MAX_IDLE_MS);
    }
    match config.guarantee {
        Guarantee::ExactlyOnce => {
            let txn_timeout = config.transaction_timeout_ms.to_string();
            c.set("transactional.id", transactional_id)
                .set("transaction.timeout.ms", &txn_timeout);
            if !user_set("message.timeout.ms") {
                c.set("message.timeout.ms", &txn_timeout);
            }
        }
        Guarantee::AtLeastOnce | Guarantee::AutoCommit => {
            c.set("enable.idempotence", "true");
        }
    }
    let producer: ThreadedProducer<DeliveryContext> = c
        .create_with_context(DeliveryContext::new())
        .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
    Ok(Arc::new(WorkerProducer::new(producer, stats)))
}

/// The first back-off before a worker starts again in place; it doubles with each recovery
/// in a row, up to [`MAX_RECOVERY_BACKOFF`].
const RECOVERY_BACKOFF: Duration = Duration::from_millis(200);
const MAX_RECOVERY_BACKOFF: Duration = Duration::from_secs(10);

/// What a worker with a query server shares with it.
pub(crate) struct WorkerQueries {
    /// The worker's queryable states.
    pub(crate) registry: Arc<QueryRegistry>,
    /// The server's advertised address, carried in the consumer's client id.
    pub(crate) advertised: String,
}

/// Runs one worker until `stop` is set or an error a restart cannot fix. After an error
/// with a [`recovery_cause`](Error::recovery_cause) the worker starts again in place — a
/// new producer, consumer and state manager, the same directory and transactional id —
/// after a back-off, at most `max_recoveries` times in a row without a commit in between;
/// so does a panic in user code under [`OnPanic::Restart`].
/// `instance` (the locked directory) is held throughout.
pub(crate) fn supervise(
    config: Config,
    pipeline: Pipeline,
    instance: Instance,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    queries: Option<WorkerQueries>,
) -> Result<()> {
    let mut in_a_row = 0u32;
    let mut first = true;
    loop {
        let commits_before = stats.commits.load(Ordering::Relaxed);
        let result = run_worker(
            config.clone(),
            pipeline.clone(),
            &instance,
            stop.clone(),
            stats.clone(),
            queries.as_ref(),
        );
        let err = match result {
            Ok(()) => return Ok(()),
            Err(err) => name_resources(err, &config, &instance, &pipeline),
        };
        // A broker that is away at the first start is reported (a wrong address looks the
        // same); once the worker has run, it is waited for. A panic restarts only when the
        // user asked for it, with its own limit and back-off.
        let (cause, max, backoff_base) = match (&err, config.on_panic) {
            (Error::Panicked { .. }, OnPanic::Restart { max, backoff }) => {
                (Some("panic"), max, Some(backoff))
            }
            _ => (
                err.recovery_cause().or_else(|| {
                    (!first && matches!(err, Error::Unreachable { .. }))
                        .then_some("broker_unavailable")
                }),
                config.max_recoveries,
                None,
            ),
        };
        first = false;
        let Some(cause) = cause else {
            return Err(err);
        };
        if stop.load(Ordering::Relaxed) {
            // The worker would have started again in place: nothing of the dropped cycle
            // was committed, so a stop asked for meanwhile ends it cleanly.
            tracing::info!(cause, error = %err, "stopping: the open cycle was dropped, nothing of it is committed");
            return Ok(());
        }
        if stats.commits.load(Ordering::Relaxed) > commits_before {
            in_a_row = 0;
        }
        if in_a_row >= max {
            if max > 0 {
                tracing::error!(
                    cause,
                    recoveries = in_a_row,
                    "recovered as many times in a row as allowed, without committing: stopping"
                );
            }
            return Err(err);
        }
        in_a_row += 1;
        let backoff = backoff_base.unwrap_or_else(|| {
            (RECOVERY_BACKOFF * 2u32.pow((in_a_row - 1).min(10))).min(MAX_RECOVERY_BACKOFF)
        });
        tracing::warn!(cause, error = %err, attempt = in_a_row, ?backoff, "recovering: the open cycle is dropped; starting again with a new producer and consumer");
        stats.recovered(cause);
        stats.partitions.store(0, Ordering::Relaxed);
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Names what an [`Error::NotAuthorized`] that names nothing yet was refused on, from what
/// this worker asks for: its group, its transactional id, its input topics (`READ`) or the
/// topics it writes (`WRITE`, `CREATE`).
fn name_resources(err: Error, config: &Config, instance: &Instance, pipeline: &Pipeline) -> Error {
    let app = &config.application_id;
    let err = err
        .naming("GROUP", app)
        .naming("TRANSACTIONAL_ID", instance.transactional_id());
    let Error::NotAuthorized {
        resource_type: "TOPIC",
        resource: None,
        operation,
        ..
    } = &err
    else {
        return err;
    };
    let topics: Vec<String> = if *operation == "READ" {
        pipeline
            .stages
            .iter()
            .map(|s| s.input.resolve(app))
            .collect()
    } else {
        std::iter::once(pipeline.output.clone())
            .chain(pipeline.side_topics.iter().cloned())
            .chain(
                pipeline
                    .internal_topics()
                    .into_iter()
                    .map(|t| format!("{app}-{t}")),
            )
            .collect()
    };
    err.naming("TOPIC", topics.join(" or "))
}

/// Runs one incarnation of a worker until `stop` is set or a fatal error happens.
fn run_worker(
    config: Config,
    pipeline: Pipeline,
    instance: &Instance,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    queries: Option<&WorkerQueries>,
) -> Result<()> {
    let poison = Arc::new(Poison::default());
    let output = create_producer(&config, instance.transactional_id(), stats.clone())?;
    let metadata_timeout = Duration::from_millis(config.startup_timeout_ms);
    let app = &config.application_id;
    let topics: Vec<String> = pipeline
        .stages
        .iter()
        .map(|s| s.input.resolve(app))
        .collect();
    let inputs = topics::partition_count(
        output.producer.client(),
        &config.brokers,
        &topics[0],
        metadata_timeout,
    )
    .map_err(|e| match e {
        Error::Unreachable { brokers, message } => Error::Unreachable {
            brokers,
            message: format!(
                "{message}{}; a worker waits startup_timeout_ms ({} ms) at its first start",
                output
                    .producer
                    .context()
                    .last_client_error()
                    .map(|r| format!("; the client reported: {r}"))
                    .unwrap_or_default(),
                config.startup_timeout_ms
            ),
        },
        other => other.needing("READ"),
    })?;
    // Inputs merged partition by partition (pipeline/merge.rs) need equal partition counts.
    for stage in &pipeline.stages {
        let Some(with) = &stage.copartitioned_with else {
            continue;
        };
        let count = |t: &str| {
            topics::partition_count(
                output.producer.client(),
                &config.brokers,
                t,
                metadata_timeout,
            )
            .map_err(|e| e.needing("READ"))
        };
        let (a, b) = (with.resolve(app), stage.input.resolve(app));
        let (n, m) = (count(&a)?, count(&b)?);
        if n != m {
            return Err(Error::config(
                "inputs",
                format!(
                    "the pipeline merges `{a}` ({n} partitions) and `{b}` ({m} partitions) \
                     partition by partition: merged inputs need equal partition counts \
                     (or merge them by key: `Stream::merge_by_key`)"
                ),
            ));
        }
    }
    if let Some(q) = queries {
        for stage in &pipeline.stages {
            let topic = stage.input.resolve(app);
            for d in &stage.queryable {
                q.registry
                    .declare(&d.operator, &d.state, &topic, inputs, d.codec.clone());
            }
        }
    }
    let mut internal = HashSet::new();
    for name in pipeline.internal_topics() {
        let topic = format!("{app}-{name}");
        crate::topics::ensure_topic(
            &config,
            &topic,
            inputs,
            crate::topics::TopicKind::Repartition,
        )?;
        internal.insert(topic);
    }
    let outputs = topics::partition_count(
        output.producer.client(),
        &config.brokers,
        &pipeline.output,
        metadata_timeout,
    )
    .map_err(|e| e.needing("WRITE"))?;
    for side in &pipeline.side_topics {
        topics::partition_count(
            output.producer.client(),
            &config.brokers,
            side,
            metadata_timeout,
        )
        .map_err(|e| e.needing("WRITE"))?;
    }
    // Records older than an output's retention.ms vanish soon after they are written: the
    // producer warns once per topic (a topic whose configs cannot be read is not watched).
    for topic in std::iter::once(&pipeline.output).chain(&pipeline.side_topics) {
        match topics::time_retention(&config, topic) {
            Ok(Some(ms)) => output.watch_retention(topic, ms),
            Ok(None) => {}
            Err(err) => tracing::debug!(topic, %err, "cannot read retention.ms; not watched"),
        }
    }
    tracing::info!(?topics, inputs, output = %pipeline.output, outputs, side_topics = ?pipeline.side_topics, guarantee = ?config.guarantee, instance = %instance.dir().display(), "worker starting");
    if config.guarantee == Guarantee::ExactlyOnce {
        let p = &output.producer;
        with_retries(config.max_retries, crate::commit::RETRY_BACKOFF, || {
            p.init_transactions(config.kafka_call_timeout())
                .map_err(|e| Error::kafka(KafkaOp::InitTransactions, e))
        })?;
    }
    let transactions = KafkaTransactions {
        output: output.clone(),
        timeout: config.kafka_call_timeout(),
        instance: config.group_instance_id.clone(),
    };
    let manager = Arc::new(StateManager::new(
        config.clone(),
        output.clone(),
        inputs,
        stats.clone(),
        instance.dir().join(crate::state::STORE_DIR),
        queries.map(|q| q.registry.clone()),
    ));
    for stage in &pipeline.stages {
        for d in &stage.queryable {
            manager.add_standby_target(&d.operator, &d.state, &stage.input.resolve(app))?;
        }
    }
    let state = Arc::new(Mutex::new(Some(WorkerState {
        committer: Committer::new(&config, transactions, stats.clone(), poison.clone()),
        builds: pipeline
            .stages
            .iter()
            .map(|s| (s.input.resolve(app), s.build.clone()))
            .collect(),
        internal,
        output: output.clone(),
        state: manager,
        tasks: Tasks::new(),
        stats: stats.clone(),
        poison: poison.clone(),
        config: config.clone(),
        fatal: None,
        aborts_in_a_row: 0,
        admin: None,
        last_purge: Instant::now(),
        bad_records: pipeline.bad_records.clone(),
        to_divert: HashMap::new(),
        diverted_in_cycle: Vec::new(),
        serves_queries: queries.is_some(),
        last_idle_start: Instant::now(),
    })));
    let consumer = consumer::create_consumer(
        &config,
        WorkerContext {
            state: state.clone(),
            stats: stats.clone(),
        },
        queries.map(|q| q.advertised.as_str()),
    )?;
    consumer
        .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
        .map_err(|e| Error::kafka(KafkaOp::Subscribe, e))?;

    let looped = catch_unwind(AssertUnwindSafe(|| {
        poll_loop(&consumer, &state, &stop, config.commit_interval())
    }));
    let result = match looped {
        Ok(result) => result,
        Err(payload) => {
            // A panic outside user code (a bug of the runtime): nothing may commit.
            let err = poison.record(
                "the runtime",
                "in the worker loop".into(),
                poison::message(payload.as_ref()),
            );
            if let Some(st) = lock(&state).as_mut() {
                let _ = st.fail(Error::Worker("the worker loop panicked".into()), &consumer);
            }
            Err(err)
        }
    };
    // Leave the group: close runs the revoke callback, which commits what is still open
    // (after an error the state was already aborted and is removed first).
    if result.is_err() {
        lock(&state).take();
    }
    close_consumer(consumer);
    let late = lock(&state).take().and_then(|mut s| s.fatal.take());
    if let Some(e) = late {
        return Err(e);
    }
    if result.is_ok() && config.guarantee != Guarantee::ExactlyOnce {
        let _ = output.producer.flush(config.kafka_call_timeout());
    }
    match &result {
        Ok(()) => tracing::info!("worker stopped"),
        Err(e) => tracing::warn!(error = %e, "worker stopped on an error"),
    }
    result
}

/// How long a consumer may take to leave its group before the worker says so.
const SLOW_CLOSE: Duration = Duration::from_secs(10);

/// Unsubscribes and closes the consumer (librdkafka leaves the group; rust-rdkafka waits for
/// that without a deadline). A close that takes longer than [`SLOW_CLOSE`] is logged every
/// [`SLOW_CLOSE`] until it ends: a worker stuck there neither processes nor stops, and the
/// partitions it still holds wait with it.
fn close_consumer(consumer: BaseConsumer<WorkerContext>) {
    let started = Instant::now();
    let (closed, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new()
        .name("exactly-close-watch".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                wait.recv_timeout(SLOW_CLOSE)
            {
                tracing::warn!(
                    waited = ?started.elapsed(),
                    "the consumer is still leaving its group (librdkafka's close has not returned)"
                );
            }
        });
    consumer.unsubscribe();
    drop(consumer);
    let _ = closed.send(());
    if let Ok(watchdog) = watchdog {
        let _ = watchdog.join();
    }
    if started.elapsed() > SLOW_CLOSE {
        tracing::warn!(took = ?started.elapsed(), "the consumer left its group late");
    }
}

/// Records between two clock reads of a busy poll loop: a cycle ends at most this many
/// records after its interval, and the per-record path reads no clock.
const RECORDS_PER_CLOCK_READ: u32 = 64;

fn poll_loop(
    consumer: &BaseConsumer<WorkerContext>,
    state: &Mutex<Option<WorkerState>>,
    stop: &AtomicBool,
    interval: Duration,
) -> Result<()> {
    let max_wait = interval.min(Duration::from_millis(100));
    let mut wait = max_wait;
    // Records since the clock was last read (0: read it now).
    let mut since_clock = 0u32;
    loop {
        {
            let mut guard = lock(state);
            let Some(st) = guard.as_mut() else {
                return Ok(());
            };
            if let Some(e) = st.fatal.take() {
                return Err(st.fail(e, consumer));
            }
            if stop.load(Ordering::Relaxed) {
                return match st.commit(consumer) {
                    Ok(()) => Ok(()),
                    Err(e) => Err(st.fail(e, consumer)),
                };
            }
            let read_clock = since_clock == 0;
            let due = if read_clock {
                st.committer.due()
            } else {
                st.committer.full()
            };
            if due {
                if let Err(e) = st.commit(consumer) {
                    return Err(st.fail(e, consumer));
                }
            }
            if read_clock {
                if let Err(e) = st.fire_wall_clock() {
                    if let Err(e) = st.record_failed(e, consumer) {
                        return Err(st.fail(e, consumer));
                    }
                }
            }
            if read_clock || due {
                // A busy loop's poll returns at once; the wait matters once input stops.
                wait = st.committer.time_to_due().min(max_wait);
            }
        }
        match consumer.poll(wait) {
            None => {
                since_clock = 0;
                // Idle: housekeeping that a busy worker does after its commits.
                if let Some(st) = lock(state).as_mut() {
                    st.purge_committed();
                    st.start_idle_tasks(consumer);
                }
            }
            Some(Ok(m)) => {
                since_clock = (since_clock + 1) % RECORDS_PER_CLOCK_READ;
                let mut guard = lock(state);
                let Some(st) = guard.as_mut() else {
                    return Ok(());
                };
                if let Err(e) = st.process(&m, consumer) {
                    since_clock = 0;
                    if let Err(e) = st.record_failed(e, consumer) {
                        return Err(st.fail(e, consumer));
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                let mut guard = lock(state);
                let err = match guard.as_ref() {
                    Some(st) => st.consumer_error(e),
                    None => Error::kafka(KafkaOp::Poll, e),
                };
                if err.action() == Action::Fatal {
                    return Err(match guard.as_mut() {
                        Some(st) => st.fail(err, consumer),
                        None => err,
                    });
                }
                tracing::warn!(%err, "consumer error");
            }
        }
    }
}
