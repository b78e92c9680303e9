//! The worker thread: one consumer, one producer, the poll loop and the rebalance callbacks.
//!
//! librdkafka runs rebalance callbacks synchronously inside `poll`, and every transactional
//! call blocks. The worker therefore owns a dedicated OS thread that polls a `BaseConsumer`;
//! the callbacks may block (commit) without stalling any async runtime.

use crate::commit::{Committer, Outcome, Tasks};
use crate::config::{Config, Guarantee};
use crate::error::{Action, Error, KafkaOp, Result};
use crate::pipeline::{Pipeline, TaskSetup};
use crate::record::TaskId;
use crate::runtime::stats::Stats;
use crate::runtime::task::Task;
use crate::sink::{OutputContext, OutputProducer};
use crate::source;
use crate::state::changelog::StateEnv;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::ClientContext;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Everything the poll loop and the rebalance callbacks share.
pub(crate) struct WorkerState {
    /// Each stage's resolved input topic and chain builder.
    builds: Vec<(String, Arc<crate::pipeline::BuildTask>)>,
    output: Arc<OutputProducer>,
    state: Arc<StateEnv>,
    committer: Committer,
    tasks: Tasks,
    stats: Arc<Stats>,
    /// A fatal error raised inside a callback, returned by the loop.
    fatal: Option<Error>,
    /// Cycles aborted since the last commit; past `max_retries` the worker stops.
    aborts_in_a_row: u32,
    max_aborts: u32,
}

impl WorkerState {
    /// Processes one input record in its task.
    fn process(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        let (topic, partition) = (m.topic(), m.partition());
        // A message before the task's next offset was already processed in this task (a
        // rewind after an abort sets `next_offset` back, so replays pass): the consumer
        // delivered it twice. librdkafka 2.12.1 was seen doing so (once in ~10 runs of
        // tests/runtime_rebalance.rs) for one message of a partition that stayed assigned
        // while cooperative rebalances changed the rest of the assignment — the class of
        // librdkafka #4637/#4686 (a fetch restarting from a stale position). Processing it
        // again would put a duplicate into the transaction.
        if let Some(task) = self
            .tasks
            .values()
            .find(|t| t.id.partition == partition && &*t.id.topic == topic)
        {
            if m.offset() < task.next_offset {
                tracing::warn!(task = %task.id, offset = m.offset(), next = task.next_offset, "skipping a message the consumer delivered twice");
                self.stats.duplicate_delivery();
                return Ok(());
            }
        }
        self.committer.before_record()?;
        // Linear over a handful of tasks: no allocation per record.
        let existing = self
            .tasks
            .iter_mut()
            .find(|(id, _)| id.partition == partition && &*id.topic == topic)
            .map(|(_, t)| t);
        let task = match existing {
            Some(t) => t,
            None => {
                let key = TaskId {
                    topic: Arc::from(topic),
                    partition,
                };
                tracing::info!(task = %key, offset = m.offset(), "task started");
                let Some(build) = self
                    .builds
                    .iter()
                    .find(|(t, _)| t == topic)
                    .map(|(_, b)| b.clone())
                else {
                    return Err(Error::Worker(format!(
                        "a record of {topic}, which no stage reads"
                    )));
                };
                let chain = build(&TaskSetup {
                    id: key.clone(),
                    output: self.output.clone(),
                    state: self.state.clone(),
                    start_offset: m.offset(),
                });
                self.tasks.entry(key.clone()).or_insert(Task {
                    id: key,
                    chain,
                    cycle_start: None,
                    next_offset: m.offset(),
                })
            }
        };
        if task.cycle_start.is_none() {
            task.cycle_start = Some(m.offset());
        }
        task.chain.push_message(m)?;
        task.next_offset = m.offset() + 1;
        self.stats.records_in.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs a commit cycle; a fatal error is returned, an abort is logged.
    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        match self.committer.commit_cycle(&mut self.tasks, consumer)? {
            Outcome::Empty => Ok(()),
            Outcome::Committed => {
                self.aborts_in_a_row = 0;
                self.state.flush()
            }
            Outcome::Aborted(err) => self.aborted(err),
        }
    }

    /// Counts an aborted cycle; too many in a row turn the last error into a fatal one.
    fn aborted(&mut self, err: Error) -> Result<()> {
        self.aborts_in_a_row += 1;
        if self.aborts_in_a_row > self.max_aborts {
            return Err(Error::Worker(format!(
                "{} cycles in a row were aborted; giving up. Last error: {err}",
                self.aborts_in_a_row
            )));
        }
        tracing::warn!(%err, in_a_row = self.aborts_in_a_row, "cycle aborted and input rewound; replaying");
        Ok(())
    }

    /// A record failed: abortable errors abort and replay the cycle, others stop the worker.
    fn record_failed<C: ConsumerContext>(
        &mut self,
        err: Error,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        if err.action() != Action::Abort {
            return Err(err);
        }
        self.committer
            .abort_and_rewind(&mut self.tasks, consumer, &BTreeSet::new())?;
        self.aborted(err)
    }

    /// Stops after an error: aborts what is open. Returns the error to report.
    fn fail<C: ConsumerContext>(&mut self, err: Error, consumer: &BaseConsumer<C>) -> Error {
        if let Err(abort_err) =
            self.committer
                .abort_and_rewind(&mut self.tasks, consumer, &BTreeSet::new())
        {
            tracing::error!(%abort_err, "could not abort the open transaction");
        }
        err
    }

    /// The revoke half of a rebalance: commit (or abort when the assignment was lost), then
    /// drop the revoked tasks.
    fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        revoked: &rdkafka::TopicPartitionList,
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
        if consumer.assignment_lost() {
            // The group has moved on: this transaction can never commit.
            tracing::warn!("assignment lost: aborting the open transaction without committing");
            if let Err(e) = self
                .committer
                .abort_and_rewind(&mut self.tasks, consumer, &leaving)
            {
                self.fatal.get_or_insert(e);
            }
        } else if self.committer.is_open() {
            if let Err(e) = self.commit(consumer) {
                self.fatal.get_or_insert(e);
            }
        }
        for id in &leaving {
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
                        "exactly_partition_lag",
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
                if let Some(state) = lock(&self.state).as_mut() {
                    state.revoke(consumer, tpl);
                }
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
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

fn new_transactional_id(config: &Config) -> String {
    match &config.group_instance_id {
        Some(id) => format!("{}-{}", config.application_id, id),
        None => {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            format!(
                "{}-{}-{:x}-{}",
                config.application_id,
                std::process::id(),
                nanos,
                SEQ.fetch_add(1, Ordering::Relaxed)
            )
        }
    }
}

fn create_producer(config: &Config, stats: Arc<Stats>) -> Result<Arc<OutputProducer>> {
    let mut c = config.client_config(false);
    c.set("partitioner", "murmur2_random");
    match config.guarantee {
        Guarantee::ExactlyOnce => {
            let txn_timeout = config.transaction_timeout_ms.to_string();
            c.set("transactional.id", new_transactional_id(config))
                .set("transaction.timeout.ms", &txn_timeout);
            if !config.kafka.contains_key("message.timeout.ms") {
                c.set("message.timeout.ms", &txn_timeout);
            }
        }
        Guarantee::AtLeastOnce | Guarantee::AutoCommit => {
            c.set("enable.idempotence", "true");
        }
    }
    let producer: ThreadedProducer<OutputContext> = c
        .create_with_context(OutputContext {
            delivery_failures: AtomicU64::new(0),
            changelog_offsets: Default::default(),
        })
        .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
    Ok(Arc::new(OutputProducer { producer, stats }))
}

/// Runs one worker until `stop` is set or a fatal error happens.
pub(crate) fn run_worker(
    config: Config,
    pipeline: Pipeline,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Result<()> {
    let output = create_producer(&config, stats.clone())?;
    let metadata_timeout = Duration::from_secs(10);
    let app = &config.application_id;
    let topics: Vec<String> = pipeline
        .stages
        .iter()
        .map(|s| s.input.resolve(app))
        .collect();
    let inputs = source::partition_count(
        output.producer.client(),
        &config.brokers,
        &topics[0],
        metadata_timeout,
    )?;
    for internal in pipeline.internal_topics() {
        let topic = format!("{app}-{internal}");
        crate::admin::ensure_topic(
            &config,
            &topic,
            inputs,
            crate::admin::TopicKind::Repartition,
        )?;
    }
    let outputs = source::partition_count(
        output.producer.client(),
        &config.brokers,
        &pipeline.output,
        metadata_timeout,
    )?;
    for side in &pipeline.side_topics {
        source::partition_count(
            output.producer.client(),
            &config.brokers,
            side,
            metadata_timeout,
        )?;
    }
    tracing::info!(?topics, inputs, output = %pipeline.output, outputs, side_topics = ?pipeline.side_topics, guarantee = ?config.guarantee, "worker starting");
    if config.guarantee == Guarantee::ExactlyOnce {
        let p = &output.producer;
        crate::commit::with_retries(config.max_retries, KafkaOp::InitTransactions, || {
            p.init_transactions(config.kafka_call_timeout())
        })?;
    }
    let state = Arc::new(Mutex::new(Some(WorkerState {
        committer: Committer::new(&config, output.clone(), stats.clone()),
        builds: pipeline
            .stages
            .iter()
            .map(|s| (s.input.resolve(app), s.build.clone()))
            .collect(),
        output: output.clone(),
        state: Arc::new(StateEnv::new(
            config.clone(),
            output.clone(),
            inputs,
            stats.clone(),
        )),
        tasks: Tasks::new(),
        stats: stats.clone(),
        fatal: None,
        aborts_in_a_row: 0,
        max_aborts: config.max_retries,
    })));
    let consumer = source::create_consumer(
        &config,
        WorkerContext {
            state: state.clone(),
            stats: stats.clone(),
        },
    )?;
    consumer
        .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
        .map_err(|e| Error::kafka(KafkaOp::Subscribe, e))?;

    let result = poll_loop(&consumer, &state, &stop, config.commit_interval());
    // Leave the group: close runs the revoke callback, which commits what is still open
    // (after an error the state was already aborted and is removed first).
    if result.is_err() {
        lock(&state).take();
    }
    consumer.unsubscribe();
    drop(consumer);
    let late = lock(&state).take().and_then(|mut s| s.fatal.take());
    if let Some(e) = late {
        return Err(e);
    }
    if result.is_ok() && config.guarantee != Guarantee::ExactlyOnce {
        let _ = output.producer.flush(config.kafka_call_timeout());
    }
    match &result {
        Ok(()) => tracing::info!("worker stopped"),
        Err(e) => tracing::error!(error = %e, "worker stopped on an error"),
    }
    result
}

fn poll_loop(
    consumer: &BaseConsumer<WorkerContext>,
    state: &Mutex<Option<WorkerState>>,
    stop: &AtomicBool,
    interval: Duration,
) -> Result<()> {
    let max_wait = interval.min(Duration::from_millis(100));
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
            if st.committer.due() {
                if let Err(e) = st.commit(consumer) {
                    return Err(st.fail(e, consumer));
                }
            }
        }
        let wait = {
            let guard = lock(state);
            guard
                .as_ref()
                .map(|s| s.committer.time_to_due())
                .unwrap_or(max_wait)
        }
        .min(max_wait);
        match consumer.poll(wait) {
            None => {}
            Some(Ok(m)) => {
                let mut guard = lock(state);
                let Some(st) = guard.as_mut() else {
                    return Ok(());
                };
                if let Err(e) = st.process(&m) {
                    if let Err(e) = st.record_failed(e, consumer) {
                        return Err(st.fail(e, consumer));
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                let err = Error::kafka(KafkaOp::Poll, e);
                if err.action() == Action::Fatal {
                    let mut guard = lock(state);
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
