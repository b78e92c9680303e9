//! When to cut a commit cycle, the cycle itself, and what to do when a step fails.
//!
//! `Committer::commit_cycle` is the single place where input offsets, output records and
//! state changes become visible. Its steps are DESIGN.md's five; each is marked in the code.

use crate::config::{Config, Guarantee};
use crate::error::{Action, Error, KafkaOp, Result};
use crate::record::TaskId;
use crate::runtime::stats::Stats;
use crate::runtime::task::Task;
use crate::sink::OutputProducer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tasks of a worker, by input partition.
pub(crate) type Tasks = BTreeMap<TaskId, Task>;

/// How a commit cycle ended when it did not stop the worker.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Nothing was processed since the last commit.
    Empty,
    /// Everything since the last commit is now committed.
    Committed,
    /// The cycle was aborted and the input rewound; the error says why.
    Aborted(Error),
}

/// Calls `f` until it succeeds, fails with a non-retriable error, or `max` retries are spent.
pub(crate) fn with_retries<T>(
    max: u32,
    op: KafkaOp,
    mut f: impl FnMut() -> KafkaResult<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                let err = Error::kafka(op, e);
                if err.action() == Action::Retry && attempt < max {
                    attempt += 1;
                    tracing::warn!(%err, attempt, "retrying");
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt.min(10))));
                    continue;
                }
                return Err(err);
            }
        }
    }
}

/// Owns the transaction (or offset-commit) state of one worker.
pub(crate) struct Committer {
    guarantee: Guarantee,
    producer: Arc<OutputProducer>,
    stats: Arc<Stats>,
    interval: Duration,
    max_records: u64,
    timeout: Duration,
    max_retries: u32,
    /// Under `ExactlyOnce`: a transaction is open.
    txn_open: bool,
    /// Input records processed since the last commit.
    records: u64,
    cycle_started: Instant,
}

impl Committer {
    pub(crate) fn new(config: &Config, producer: Arc<OutputProducer>, stats: Arc<Stats>) -> Self {
        Committer {
            guarantee: config.guarantee,
            producer,
            stats,
            interval: config.commit_interval(),
            max_records: config.commit_max_records,
            timeout: config.kafka_call_timeout(),
            max_retries: config.max_retries,
            txn_open: false,
            records: 0,
            cycle_started: Instant::now(),
        }
    }

    /// Must be called before a record is processed: opens the transaction if needed.
    ///
    /// # Errors
    /// `begin_transaction` failed (always fatal: it fails only on a broken producer).
    pub(crate) fn before_record(&mut self) -> Result<()> {
        if self.records == 0 {
            self.cycle_started = Instant::now();
        }
        if self.guarantee == Guarantee::ExactlyOnce && !self.txn_open {
            self.producer
                .producer
                .begin_transaction()
                .map_err(|e| Error::kafka(KafkaOp::BeginTransaction, e))?;
            self.txn_open = true;
        }
        self.records += 1;
        Ok(())
    }

    /// Whether the open cycle has reached `commit_interval_ms` or `commit_max_records`.
    pub(crate) fn due(&self) -> bool {
        self.records > 0
            && (self.records >= self.max_records || self.cycle_started.elapsed() >= self.interval)
    }

    /// How long the worker may wait for records before the open cycle is due.
    pub(crate) fn time_to_due(&self) -> Duration {
        if self.records == 0 {
            self.interval
        } else {
            self.interval.saturating_sub(self.cycle_started.elapsed())
        }
    }

    /// One commit cycle over every task of the worker:
    ///
    /// 1. operators flush (`on_barrier`): every output and state change of the cycle is
    ///    now in the open transaction's producer queue or the task's dirty overlay;
    /// 2. stateful operators' changelog records for their dirty keys are produced in the
    ///    same transaction (inside their barrier);
    /// 3. `send_offsets_to_transaction(next offset of every task, group metadata)`;
    /// 4. `commit_transaction` — the single commit point;
    /// 5. only after 4 succeeded: operators apply their overlays (`on_commit`).
    ///
    /// Failure before 4 completes aborts the transaction, drops every overlay and seeks
    /// every task back to the first offset of the cycle ([`Outcome::Aborted`]); a fatal error
    /// (fenced) aborts best-effort and is returned. Under `AtLeastOnce`, steps 3–4 are a
    /// producer flush followed by a synchronous offset commit; under `AutoCommit` only step 1
    /// runs.
    ///
    /// # Errors
    /// Only errors whose [`Action`] is `Fatal`; the worker must stop.
    pub(crate) fn commit_cycle<C: ConsumerContext>(
        &mut self,
        tasks: &mut Tasks,
        consumer: &BaseConsumer<C>,
    ) -> Result<Outcome> {
        if self.records == 0 {
            self.cycle_started = Instant::now();
            return Ok(Outcome::Empty);
        }
        let started = Instant::now();
        let _span = tracing::debug_span!("commit_cycle", records = self.records).entered();
        let result = self.try_commit(tasks, consumer);
        match result {
            Ok(()) => {
                // Step 5: the transaction is committed; make state and offsets follow it.
                crash_point_after_commit();
                for task in tasks.values_mut() {
                    task.cycle_start = None;
                    task.chain.commit(task.next_offset)?;
                }
                self.stats.committed(self.records, started.elapsed());
                self.records = 0;
                self.cycle_started = Instant::now();
                Ok(Outcome::Committed)
            }
            Err(
                err @ Error::Kafka {
                    op: KafkaOp::CommitTransaction,
                    ..
                },
            ) if err.action() == Action::Retry => {
                // librdkafka is still completing the commit: an abort now would conflict,
                // and the outcome is unknown. Stop without aborting; on restart the group's
                // committed offsets (and the state restore) decide.
                Err(Error::Worker(format!(
                    "commit_transaction did not complete after {} attempts ({err}); its outcome is unknown, \
                     so this worker stops without aborting. A restart resumes from the group's committed offsets",
                    self.max_retries + 1
                )))
            }
            Err(err) if err.action() == Action::Fatal => {
                tracing::error!(%err, "commit cycle failed fatally");
                let _ = self.abort_and_rewind(tasks, consumer, &BTreeSet::new());
                Err(err)
            }
            Err(err) => {
                tracing::warn!(%err, "commit cycle aborted; replaying from the last commit");
                self.abort_and_rewind(tasks, consumer, &BTreeSet::new())?;
                Ok(Outcome::Aborted(err))
            }
        }
    }

    /// Steps 1–4 of [`commit_cycle`](Self::commit_cycle).
    fn try_commit<C: ConsumerContext>(
        &mut self,
        tasks: &mut Tasks,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        // Steps 1 and 2: operators flush; stateful ones produce their changelog records.
        for task in tasks.values_mut() {
            if task.cycle_start.is_some() {
                task.chain.barrier()?;
            }
        }
        let offsets = next_offsets(tasks)?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let cycle: Vec<String> = tasks
                .values()
                .filter_map(|t| Some(format!("{}: {}..{}", t.id, t.cycle_start?, t.next_offset)))
                .collect();
            tracing::debug!(?cycle, "committing");
        }
        let producer = &self.producer.producer;
        match self.guarantee {
            Guarantee::ExactlyOnce => {
                // Step 3: the consumed offsets join the transaction.
                let metadata = consumer.group_metadata().ok_or_else(|| Error::Fenced {
                    op: KafkaOp::SendOffsets,
                    reason: "the consumer has no group metadata (not a group member)".into(),
                })?;
                with_retries(self.max_retries, KafkaOp::SendOffsets, || {
                    producer.send_offsets_to_transaction(&offsets, &metadata, self.timeout)
                })?;
                // Step 4: the commit point.
                drain(producer, self.timeout);
                with_retries(self.max_retries, KafkaOp::CommitTransaction, || {
                    producer.commit_transaction(self.timeout)
                })?;
                self.txn_open = false;
            }
            Guarantee::AtLeastOnce => {
                let failures_before = self
                    .producer
                    .producer
                    .context()
                    .delivery_failures
                    .load(Ordering::Relaxed);
                drain(producer, self.timeout);
                with_retries(self.max_retries, KafkaOp::Flush, || {
                    producer.flush(self.timeout)
                })?;
                let failures = self
                    .producer
                    .producer
                    .context()
                    .delivery_failures
                    .load(Ordering::Relaxed);
                if failures != failures_before {
                    return Err(Error::kafka(
                        KafkaOp::Produce,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::Fail,
                        ),
                    ));
                }
                with_retries(self.max_retries, KafkaOp::CommitOffsets, || {
                    consumer.commit(&offsets, CommitMode::Sync)
                })?;
            }
            Guarantee::AutoCommit => {}
        }
        Ok(())
    }

    /// Aborts the open cycle: abort the transaction, drop every overlay, and seek each task
    /// (except `leaving` ones, whose partitions are going away) back to the first offset of
    /// the cycle.
    ///
    /// # Errors
    /// `abort_transaction` or the seek failed: the worker must stop (a restart resumes from
    /// the committed offsets).
    pub(crate) fn abort_and_rewind<C: ConsumerContext>(
        &mut self,
        tasks: &mut Tasks,
        consumer: &BaseConsumer<C>,
        leaving: &BTreeSet<TaskId>,
    ) -> Result<()> {
        if self.records == 0 && !self.txn_open {
            return Ok(());
        }
        if self.txn_open {
            let producer = &self.producer.producer;
            let aborted = with_retries(self.max_retries, KafkaOp::AbortTransaction, || {
                producer.abort_transaction(self.timeout)
            });
            self.txn_open = false;
            aborted.map_err(|e| match e {
                Error::Kafka { op, source } => Error::Fenced {
                    op,
                    reason: format!("the transaction could not be aborted: {source}"),
                },
                other => other,
            })?;
        }
        self.stats.aborted();
        self.records = 0;
        self.cycle_started = Instant::now();
        // abort_transaction does not rewind the consumer: seek back ourselves.
        let mut rewind = TopicPartitionList::new();
        for task in tasks.values_mut() {
            task.chain.abort();
            if let Some(start) = task.cycle_start.take() {
                task.next_offset = start;
                if !leaving.contains(&task.id) {
                    rewind
                        .add_partition_offset(
                            &task.id.topic,
                            task.id.partition,
                            Offset::Offset(start),
                        )
                        .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
                }
            }
        }
        if rewind.count() > 0 {
            tracing::debug!(rewind = ?rewind.elements().iter().map(|e| (e.topic().to_string(), e.partition(), e.offset())).collect::<Vec<_>>(), "rewinding");
            let result = consumer
                .seek_partitions(rewind, self.timeout)
                .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
            for elem in result.elements() {
                if let Err(e) = elem.error() {
                    return Err(Error::kafka(KafkaOp::Seek, e));
                }
            }
        }
        Ok(())
    }

    /// Whether a cycle is open (records processed and not yet committed).
    pub(crate) fn is_open(&self) -> bool {
        self.records > 0 || self.txn_open
    }
}

/// Waits (bounded by `timeout`) until every produced record is acknowledged.
///
/// `commit_transaction` and `flush` flush first, and rdkafka's flush waits for the
/// `ThreadedProducer`'s delivery reports in 100 ms slices: without this, every commit took
/// at least 100 ms. Polling the in-flight count brings a commit down to a few ms.
fn drain<C: rdkafka::producer::ProducerContext + 'static>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Test-only fault point: with `EXACTLY_TEST_CRASH_AFTER_COMMITS=N` set, the process aborts
/// right after its N-th successful `commit_transaction`, before step 5 applies state.
fn crash_point_after_commit() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static AFTER: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static COMMITS: AtomicU64 = AtomicU64::new(0);
    let after = AFTER.get_or_init(|| {
        std::env::var("EXACTLY_TEST_CRASH_AFTER_COMMITS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(n) = after {
        if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("EXACTLY_TEST_CRASH_AFTER_COMMITS: aborting between commit and state apply");
            std::process::abort();
        }
    }
}

/// Step 3's argument: the next offset of every task that progressed in this cycle.
fn next_offsets(tasks: &Tasks) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for task in tasks.values().filter(|t| t.cycle_start.is_some()) {
        tpl.add_partition_offset(
            &task.id.topic,
            task.id.partition,
            Offset::Offset(task.next_offset),
        )
        .map_err(|e| Error::kafka(KafkaOp::SendOffsets, e))?;
    }
    Ok(tpl)
}
