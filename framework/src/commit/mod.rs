//! The commit protocol: when to cut a cycle, the cycle itself, and what each failure does.
//!
//! `Committer` is the protocol core, and it does no I/O: it talks to three traits —
//! `Transactions` (the transactional producer), `Group` (the group consumer) and
//! `State` (the tasks' operators and keyed state) — in the style of raft-rs's
//! `RawNode`/`Storage`. `kafka.rs` implements the first two over rdkafka; the unit tests
//! (`tests.rs`) implement all three in memory and pin every step and every failure branch,
//! while the broker tests prove the whole.
//!
//! A commit cycle, under `ExactlyOnce`:
//!
//! 1. operators flush (`on_barrier`): every output and state change of the cycle is now in
//!    the open transaction's producer queue or a task's dirty overlay;
//! 2. stateful operators' changelog records for their dirty keys are produced in the same
//!    transaction (inside their barrier);
//! 3. the gate: this worker is still a member that owns its partitions
//!    (`assignment_lost() == false`, a member id, a generation >= 0) — else abort and rewind;
//!    then `send_offsets_to_transaction(next offset of every task, group metadata)`;
//! 4. `commit_transaction` — the single commit point;
//! 5. only after 4 succeeded: operators apply their overlays to the local store.

pub(crate) mod committer;
pub(crate) mod kafka;
#[cfg(test)]
mod tests;

pub(crate) use committer::{Committer, Outcome};

use crate::error::{Action, Error, KafkaOp, Result};
use crate::record::TaskId;
use std::collections::BTreeSet;
use std::time::Duration;

/// A task's offset: where to resume, or the next offset to commit.
pub(crate) type Position = (TaskId, i64);

/// The transactional producer, as the commit cycle uses it. Every call blocks; errors come
/// classified ([`Error::action`]), and the core decides from that alone.
pub(crate) trait Transactions {
    /// What `send_offsets` needs from the group (rdkafka's `ConsumerGroupMetadata`).
    type Metadata;
    /// `begin_transaction`.
    fn begin(&mut self) -> Result<()>;
    /// `send_offsets_to_transaction` (retriable with the same arguments).
    fn send_offsets(&mut self, offsets: &[Position], metadata: &Self::Metadata) -> Result<()>;
    /// Waits for every produced record, then `commit_transaction` (resumable after a
    /// retriable timeout: call it again).
    fn commit(&mut self) -> Result<()>;
    /// `abort_transaction`.
    fn abort(&mut self) -> Result<()>;
    /// Under `AtLeastOnce`: waits until every produced record is acknowledged, and fails if
    /// one was not delivered.
    fn flush(&mut self) -> Result<()>;
}

/// The group consumer, as the commit cycle uses it.
pub(crate) trait Group {
    /// What the producer's `send_offsets` needs (rdkafka's `ConsumerGroupMetadata`).
    type Metadata;
    /// This worker's standing in the group, with the metadata to send, read so that the
    /// two agree.
    fn membership(&self) -> Membership<Self::Metadata>;
    /// Moves each partition's position back to where its task resumes.
    fn seek(&mut self, positions: &[Position]) -> Result<()>;
    /// Under `AtLeastOnce`: a synchronous offset commit.
    fn commit_offsets(&mut self, offsets: &[Position]) -> Result<()>;
}

/// The tasks of a worker — their operator chains and keyed state — as the cycle drives them.
pub(crate) trait State {
    /// Steps 1 and 2 for every task with records in the open cycle.
    fn barrier(&mut self) -> Result<()>;
    /// Step 3's argument: the next offset of every task with records in the open cycle.
    fn offsets(&self) -> Vec<Position>;
    /// Step 5: the transaction committed; state follows it and the cycle closes.
    fn committed(&mut self) -> Result<()>;
    /// The cycle is dropped (overlays, operators' uncommitted work). Returns where each
    /// task not in `leaving` must resume: the first offset of its cycle.
    fn aborted(&mut self, leaving: &BTreeSet<TaskId>) -> Vec<Position>;
}

/// Where a worker stands in its consumer group, as the commit gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership<M> {
    /// librdkafka's `assignment_lost()`: the group has moved on without this member.
    pub(crate) lost: bool,
    /// The member id ("" once librdkafka reset it: the member left or was removed).
    pub(crate) member_id: String,
    /// The generation (-1 once librdkafka reset it).
    pub(crate) generation: i32,
    /// The metadata to send; `None` when the consumer has none, or when it changed while
    /// it was read (a rebalance in between).
    pub(crate) metadata: Option<M>,
}

impl<M> Membership<M> {
    /// Whether this member may commit offsets now: `Ok`, or the error that stops the cycle.
    ///
    /// The broker does not check a transactional offset commit whose member id is empty and
    /// generation is -1 (it takes it for a pre-KIP-447 producer): a zombie whose librdkafka
    /// reset both would commit over its successor. So nothing is sent unless the member
    /// has an id, a generation and its assignment. A reset member id means the group removed
    /// this member, as an `UNKNOWN_MEMBER_ID` from the broker would: [`Error::Fenced`]. A
    /// lost assignment or a reset generation abort the cycle ([`Error::MembershipLost`]):
    /// the consumer rejoins, and the cycle is replayed.
    pub(crate) fn check(&self) -> Result<()> {
        let lost = |reason: &str| {
            Err(Error::MembershipLost {
                reason: reason.into(),
            })
        };
        if self.member_id.is_empty() {
            return Err(Error::Fenced {
                op: KafkaOp::SendOffsets,
                reason: "the group removed this member (its member id was reset: it left, or \
                         exceeded max.poll.interval.ms or session.timeout.ms)"
                    .into(),
            });
        }
        if self.lost {
            return lost("the assignment was lost (the group moved on without this member)");
        }
        if self.generation < 0 {
            return lost(
                "the generation was reset (the group no longer knows this member's generation)",
            );
        }
        if self.metadata.is_none() {
            return lost("the group metadata is missing or changed while it was read");
        }
        Ok(())
    }
}

/// Calls `f` until it succeeds, fails with an error that is not [`Action::Retry`], or
/// `max` retries are spent; waits `backoff × attempt` (at most 10×) between calls.
pub(crate) fn with_retries<T>(
    max: u32,
    backoff: Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(err) if err.action() == Action::Retry && attempt < max => {
                attempt += 1;
                tracing::warn!(%err, attempt, "retrying");
                std::thread::sleep(backoff * attempt.min(10));
            }
            Err(err) => return Err(err),
        }
    }
}

/// The default back-off between retries of one call.
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Whether `err` came from `commit_transaction` and is still retriable: the commit may be
/// under way, so its outcome is unknown.
fn is_unfinished_commit(err: &Error) -> bool {
    matches!(
        err,
        Error::Kafka {
            op: KafkaOp::CommitTransaction,
            ..
        }
    ) && err.action() == Action::Retry
}
