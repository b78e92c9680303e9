//! The protocol core: when a cycle is due, the five steps, and every failure branch. No I/O
//! of its own: the producer, the consumer and the tasks come in through the traits of
//! [`commit`](super).

use super::{is_unfinished_commit, with_retries, Group, State, Transactions};
use crate::config::{Config, Guarantee};
use crate::error::{Action, Error, KafkaOp, Result};
use crate::observability::Stats;
use crate::poison::Poison;
use crate::record::TaskId;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// The transaction as the committer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Txn {
    /// No transaction open (or not `ExactlyOnce`).
    Idle,
    /// `begin_transaction` succeeded at `since`.
    Open { since: Instant },
    /// A `commit_transaction` or `abort_transaction` whose outcome is unknown: the producer
    /// is never used again (librdkafka lacks KIP-890's server-side defence, so a late
    /// commit or abort could apply to a later transaction).
    Unknown,
}

/// Owns the transaction (or offset-commit) state of one worker, and runs its cycles.
pub(crate) struct Committer<T: Transactions> {
    txn: T,
    guarantee: Guarantee,
    stats: Arc<Stats>,
    poison: Arc<Poison>,
    interval: Duration,
    max_records: u64,
    max_retries: u32,
    backoff: Duration,
    transaction_timeout: Duration,
    state: Txn,
    /// Input records processed since the last commit.
    records: u64,
    cycle_started: Instant,
}

impl<T: Transactions> Committer<T> {
    pub(crate) fn new(config: &Config, txn: T, stats: Arc<Stats>, poison: Arc<Poison>) -> Self {
        Committer {
            txn,
            guarantee: config.guarantee,
            stats,
            poison,
            interval: config.commit_interval(),
            max_records: config.commit_max_records,
            max_retries: config.max_retries,
            backoff: super::RETRY_BACKOFF,
            transaction_timeout: Duration::from_millis(config.transaction_timeout_ms),
            state: Txn::Idle,
            records: 0,
            cycle_started: Instant::now(),
        }
    }

    /// The same, with another back-off between retries (the unit tests use none).
    #[cfg(test)]
    pub(crate) fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The same, with another transaction timeout (the unit tests use zero).
    #[cfg(test)]
    pub(crate) fn with_transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// The producer side (the unit tests script it).
    #[cfg(test)]
    pub(crate) fn txn_mut(&mut self) -> &mut T {
        &mut self.txn
    }

    /// Must be called before a record is processed, after its task has marked where the
    /// cycle starts (so that a failure here rewinds to the record): opens the transaction
    /// if needed.
    ///
    /// # Errors
    /// The worker is poisoned or the producer unusable; `begin_transaction` failed.
    pub(crate) fn before_record(&mut self) -> Result<()> {
        self.usable()?;
        if self.records == 0 {
            self.cycle_started = Instant::now();
        }
        if self.guarantee == Guarantee::ExactlyOnce && self.state == Txn::Idle {
            let begun = self.txn.begin();
            self.explained(KafkaOp::BeginTransaction, begun)?;
            self.state = Txn::Open {
                since: Instant::now(),
            };
        }
        self.records += 1;
        Ok(())
    }

    /// Whether the open cycle has reached `commit_interval_ms` or `commit_max_records`.
    pub(crate) fn due(&self) -> bool {
        self.records > 0
            && (self.records >= self.max_records || self.cycle_started.elapsed() >= self.interval)
    }

    /// Whether the open cycle has reached `commit_max_records` (no clock read: the poll
    /// loop calls this after each record, and [`due`](Self::due) only now and then).
    pub(crate) fn full(&self) -> bool {
        self.records >= self.max_records
    }

    /// How long the worker may wait for records before the open cycle is due.
    pub(crate) fn time_to_due(&self) -> Duration {
        if self.records == 0 {
            self.interval
        } else {
            self.interval.saturating_sub(self.cycle_started.elapsed())
        }
    }

    /// Whether a cycle is open (records processed, or a transaction begun, and not yet
    /// committed or aborted).
    pub(crate) fn is_open(&self) -> bool {
        self.records > 0 || matches!(self.state, Txn::Open { .. })
    }

    /// One commit cycle over every task of the worker: the five steps of
    /// [`commit`](super). Under `AtLeastOnce`, steps 3–4 are a producer flush and a
    /// synchronous offset commit; under `AutoCommit` only steps 1, 2 and 5 run.
    ///
    /// Failure before step 4 completes aborts the transaction, drops every overlay and
    /// seeks every task back to the first offset of its cycle ([`Outcome::Aborted`]). A
    /// fatal error aborts what can be aborted and is returned. A `commit_transaction` that
    /// stays retriable past `max_retries` has an unknown outcome: nothing more is sent
    /// ([`Error::CommitOutcomeUnknown`]). A poisoned worker (a panic in user code) never
    /// commits: it aborts and returns the panic.
    ///
    /// # Errors
    /// Only errors whose [`Action`] is `Fatal`; the worker must stop.
    pub(crate) fn commit_cycle<G: Group<Metadata = T::Metadata>>(
        &mut self,
        state: &mut impl State,
        group: &mut G,
    ) -> Result<Outcome> {
        if let Some(panic) = self.poison.error() {
            self.abort_and_rewind(state, group, &BTreeSet::new())?;
            return Err(panic);
        }
        self.usable()?;
        if !self.is_open() {
            self.cycle_started = Instant::now();
            return Ok(Outcome::Empty);
        }
        let started = Instant::now();
        let _span = tracing::debug_span!("commit_cycle", records = self.records).entered();
        match self.try_commit(state, group) {
            Ok(()) => {
                // Step 5: the transaction is committed; state follows it.
                crash_point_after_commit();
                state.committed()?;
                self.stats.committed(self.records, started.elapsed());
                self.records = 0;
                self.cycle_started = Instant::now();
                Ok(Outcome::Committed)
            }
            Err(err) if is_unfinished_commit(&err) => {
                // librdkafka may still be completing the commit: an abort now would
                // conflict, and a later call could apply to another transaction.
                self.state = Txn::Unknown;
                Err(Error::CommitOutcomeUnknown {
                    attempts: self.max_retries + 1,
                    last: err.to_string(),
                })
            }
            Err(err) if err.action() == Action::Fatal => {
                tracing::error!(%err, "commit cycle failed fatally");
                if let Err(abort) = self.abort_and_rewind(state, group, &BTreeSet::new()) {
                    tracing::error!(%abort, "could not abort after the fatal error");
                }
                Err(err)
            }
            Err(err) => {
                tracing::warn!(%err, "commit cycle aborted; replaying from the last commit");
                self.abort_and_rewind(state, group, &BTreeSet::new())?;
                Ok(Outcome::Aborted(err))
            }
        }
    }

    /// Steps 1–4 of [`commit_cycle`](Self::commit_cycle).
    fn try_commit<G: Group<Metadata = T::Metadata>>(
        &mut self,
        state: &mut impl State,
        group: &mut G,
    ) -> Result<()> {
        // Steps 1 and 2: operators flush; stateful ones produce their changelog records.
        state.barrier()?;
        if let Some(panic) = self.poison.error() {
            return Err(panic);
        }
        let offsets = state.offsets();
        tracing::debug!(?offsets, "committing");
        match self.guarantee {
            Guarantee::ExactlyOnce => {
                // Step 3: the gate, then the consumed offsets join the transaction.
                let membership = group.membership();
                membership.check()?;
                let Some(metadata) = membership.metadata else {
                    unreachable!("check() requires the metadata");
                };
                if !offsets.is_empty() {
                    let sent = with_retries(self.max_retries, self.backoff, || {
                        self.txn.send_offsets(&offsets, &metadata)
                    });
                    self.explained(KafkaOp::SendOffsets, sent)?;
                }
                // Step 4: the commit point.
                let committed = with_retries(self.max_retries, self.backoff, || self.txn.commit());
                self.explained(KafkaOp::CommitTransaction, committed)?;
                self.state = Txn::Idle;
            }
            Guarantee::AtLeastOnce => {
                if group.membership().lost {
                    return Err(Error::MembershipLost {
                        reason: "the assignment was lost (the group moved on without this member)"
                            .into(),
                    });
                }
                with_retries(self.max_retries, self.backoff, || self.txn.flush())?;
                if !offsets.is_empty() {
                    with_retries(self.max_retries, self.backoff, || {
                        group.commit_offsets(&offsets)
                    })?;
                }
            }
            Guarantee::AutoCommit => {}
        }
        Ok(())
    }

    /// Aborts the open cycle: aborts the transaction (if one is open and the producer is
    /// usable), drops every overlay, and seeks each task — except `leaving` ones, whose
    /// partitions are going away — back to the first offset of its cycle. Also rewinds
    /// tasks that had marked a cycle start when `begin_transaction` failed.
    ///
    /// # Errors
    /// `abort_transaction` or the seek failed: the worker must stop (a restart resumes from
    /// the committed offsets). After a failed abort the producer is not used again.
    pub(crate) fn abort_and_rewind<G: Group>(
        &mut self,
        state: &mut impl State,
        group: &mut G,
        leaving: &BTreeSet<TaskId>,
    ) -> Result<()> {
        let was_open = self.is_open();
        if let Txn::Open { .. } = self.state {
            let aborted = with_retries(self.max_retries, self.backoff, || self.txn.abort());
            match self.explained(KafkaOp::AbortTransaction, aborted) {
                Ok(()) => self.state = Txn::Idle,
                Err(e) => {
                    // The abort's outcome is unknown: never reuse the producer.
                    self.state = Txn::Unknown;
                    state.aborted(leaving);
                    self.records = 0;
                    return Err(e);
                }
            }
        }
        let rewind = state.aborted(leaving);
        if was_open || !rewind.is_empty() {
            self.stats.aborted();
        }
        self.records = 0;
        self.cycle_started = Instant::now();
        if !rewind.is_empty() {
            // abort_transaction does not rewind the consumer: seek back ourselves.
            tracing::debug!(?rewind, "rewinding");
            group.seek(&rewind)?;
        }
        Ok(())
    }

    /// The committer may still talk to the producer.
    fn usable(&self) -> Result<()> {
        if let Some(panic) = self.poison.error() {
            return Err(panic);
        }
        if self.state == Txn::Unknown {
            return Err(Error::CommitOutcomeUnknown {
                attempts: self.max_retries + 1,
                last: "an earlier transactional call's outcome is unknown".into(),
            });
        }
        Ok(())
    }

    /// `result` with a fencing error told apart: a transaction open longer than the
    /// transaction timeout was aborted by the coordinator (which bumped the epoch), and
    /// that is not another instance taking over.
    fn explained(&self, op: KafkaOp, result: Result<()>) -> Result<()> {
        result.map_err(|err| self.explain(op, err))
    }

    /// See [`explained`](Self::explained).
    pub(crate) fn explain(&self, op: KafkaOp, err: Error) -> Error {
        match (&err, self.state) {
            (
                Error::Fenced { reason, .. } | Error::DuplicateInstance { reason, .. },
                Txn::Open { since },
            ) if since.elapsed() >= self.transaction_timeout => Error::TransactionTimedOut {
                op,
                open_ms: since.elapsed().as_millis() as u64,
                timeout_ms: self.transaction_timeout.as_millis() as u64,
                reason: reason.clone(),
            },
            _ => err,
        }
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
