//! The commit core against in-memory implementations of its three traits: every step in
//! order, and every failure branch, with the errors a Kafka client would return injected.

use super::*;
use crate::config::{Config, Guarantee};
use crate::observability::Stats;
use crate::poison::Poison;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::VecDeque;
use std::sync::Arc;

/// What the fakes were asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Begin,
    Barrier,
    Membership,
    SendOffsets(Vec<Position>),
    Commit,
    Abort,
    Flush,
    CommitOffsets(Vec<Position>),
    Seek(Vec<Position>),
    Committed,
    Aborted,
}

type Log = Arc<std::sync::Mutex<Vec<Call>>>;

fn push(log: &Log, call: Call) {
    log.lock().unwrap().push(call);
}

/// Errors to inject, per call, in order; a call without one succeeds.
#[derive(Default)]
struct Script(std::collections::HashMap<&'static str, VecDeque<Error>>);

impl Script {
    fn next(&mut self, call: &'static str) -> Result<()> {
        match self.0.get_mut(call).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn fail(&mut self, call: &'static str, errors: impl IntoIterator<Item = Error>) {
        self.0.entry(call).or_default().extend(errors);
    }
}

struct MemoryTransactions {
    log: Log,
    script: Script,
}

impl Transactions for MemoryTransactions {
    type Metadata = &'static str;
    fn begin(&mut self) -> Result<()> {
        push(&self.log, Call::Begin);
        self.script.next("begin")
    }
    fn send_offsets(&mut self, offsets: &[Position], metadata: &&'static str) -> Result<()> {
        assert_eq!(*metadata, "metadata");
        push(&self.log, Call::SendOffsets(offsets.to_vec()));
        self.script.next("send_offsets")
    }
    fn commit(&mut self) -> Result<()> {
        push(&self.log, Call::Commit);
        self.script.next("commit")
    }
    fn abort(&mut self) -> Result<()> {
        push(&self.log, Call::Abort);
        self.script.next("abort")
    }
    fn flush(&mut self) -> Result<()> {
        push(&self.log, Call::Flush);
        self.script.next("flush")
    }
}

struct MemoryGroup {
    log: Log,
    membership: Membership<&'static str>,
}

impl Group for MemoryGroup {
    type Metadata = &'static str;
    fn membership(&self) -> Membership<&'static str> {
        push(&self.log, Call::Membership);
        self.membership.clone()
    }
    fn seek(&mut self, positions: &[Position]) -> Result<()> {
        push(&self.log, Call::Seek(positions.to_vec()));
        Ok(())
    }
    fn commit_offsets(&mut self, offsets: &[Position]) -> Result<()> {
        push(&self.log, Call::CommitOffsets(offsets.to_vec()));
        Ok(())
    }
}

/// One task: `(id, first offset of the open cycle, next offset)`.
struct MemoryState {
    log: Log,
    tasks: Vec<(TaskId, Option<i64>, i64)>,
    barrier: Script,
}

impl State for MemoryState {
    fn barrier(&mut self) -> Result<()> {
        push(&self.log, Call::Barrier);
        self.barrier.next("barrier")
    }
    fn offsets(&self) -> Vec<Position> {
        self.tasks
            .iter()
            .filter(|(_, start, _)| start.is_some())
            .map(|(id, _, next)| (id.clone(), *next))
            .collect()
    }
    fn committed(&mut self) -> Result<()> {
        push(&self.log, Call::Committed);
        for t in &mut self.tasks {
            t.1 = None;
        }
        Ok(())
    }
    fn aborted(&mut self, leaving: &BTreeSet<TaskId>) -> Vec<Position> {
        push(&self.log, Call::Aborted);
        let mut rewind = Vec::new();
        for (id, start, next) in &mut self.tasks {
            if let Some(s) = start.take() {
                *next = s;
                if !leaving.contains(id) {
                    rewind.push((id.clone(), s));
                }
            }
        }
        rewind
    }
}

fn task(p: i32) -> TaskId {
    TaskId {
        topic: Arc::from("in"),
        partition: p,
    }
}

fn member() -> Membership<&'static str> {
    Membership {
        lost: false,
        member_id: "member-1".into(),
        generation: 3,
        metadata: Some("metadata"),
    }
}

/// A worker with one task (`in/0`) that processed offsets 10..15 in the open cycle.
struct Fixture {
    log: Log,
    committer: Committer<MemoryTransactions>,
    group: MemoryGroup,
    state: MemoryState,
    poison: Arc<Poison>,
}

impl Fixture {
    fn new(guarantee: Guarantee) -> Fixture {
        Self::scripted(guarantee, Script::default())
    }

    fn scripted(guarantee: Guarantee, script: Script) -> Fixture {
        let log: Log = Default::default();
        let config = Config::new("app", "127.0.0.1:1")
            .with_guarantee(guarantee)
            .with_commit_max_records(5);
        let poison = Arc::new(Poison::default());
        let txn = MemoryTransactions {
            log: log.clone(),
            script,
        };
        let committer = Committer::new(&config, txn, Arc::new(Stats::default()), poison.clone())
            .with_backoff(Duration::ZERO);
        Fixture {
            group: MemoryGroup {
                log: log.clone(),
                membership: member(),
            },
            state: MemoryState {
                log: log.clone(),
                tasks: vec![(task(0), None, 10)],
                barrier: Script::default(),
            },
            committer,
            poison,
            log,
        }
    }

    /// Processes offsets 10..15 of `in/0` as the worker does: mark the cycle start, then
    /// `before_record` for each record.
    fn process_five(&mut self) {
        for offset in 10..15 {
            let t = &mut self.state.tasks[0];
            t.1.get_or_insert(offset);
            self.committer.before_record().unwrap();
            t.2 = offset + 1;
        }
    }

    fn cycle(&mut self) -> Result<Outcome> {
        self.committer
            .commit_cycle(&mut self.state, &mut self.group)
    }

    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn fail(&mut self, call: &'static str, errors: impl IntoIterator<Item = Error>) {
        self.committer.txn_mut().script.fail(call, errors);
    }
}

fn retriable(op: KafkaOp) -> Error {
    // QueueFull is the one retriable error that can be built outside librdkafka.
    let e = Error::kafka(
        op,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
    );
    assert_eq!(e.action(), Action::Retry);
    e
}

fn abortable(op: KafkaOp) -> Error {
    let e = Error::kafka(op, KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
    assert_eq!(e.action(), Action::Abort);
    e
}

fn fenced(op: KafkaOp) -> Error {
    Error::Fenced {
        op,
        reason: "Local: This instance has been fenced by a newer instance".into(),
    }
}

fn rewind_to_10() -> Call {
    Call::Seek(vec![(task(0), 10)])
}

/// The calls end with the transaction aborted, the state dropped and `in/0` rewound to 10.
fn assert_ends_aborted_and_rewound(calls: &[Call]) {
    assert!(
        calls.ends_with(&[Call::Abort, Call::Aborted, rewind_to_10()]),
        "{calls:?}"
    );
}

#[test]
fn a_cycle_runs_the_five_steps_in_order() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    assert!(matches!(f.cycle().unwrap(), Outcome::Committed));
    assert_eq!(
        f.calls(),
        vec![
            Call::Begin,
            Call::Barrier,
            Call::Membership,
            Call::SendOffsets(vec![(task(0), 15)]),
            Call::Commit,
            Call::Committed,
        ]
    );
    assert!(!f.committer.is_open());
}

#[test]
fn an_empty_cycle_does_nothing() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    assert!(matches!(f.cycle().unwrap(), Outcome::Empty));
    assert_eq!(f.calls(), vec![]);
}

#[test]
fn a_failed_begin_rewinds_to_the_record() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.fail("begin", [abortable(KafkaOp::BeginTransaction)]);
    // The worker marks where the cycle starts, then opens the transaction.
    f.state.tasks[0].1 = Some(10);
    let err = f.committer.before_record().unwrap_err();
    assert_eq!(err.action(), Action::Abort);
    f.committer
        .abort_and_rewind(&mut f.state, &mut f.group, &BTreeSet::new())
        .unwrap();
    // No transaction to abort, but the record is delivered again.
    assert_eq!(f.calls(), vec![Call::Begin, Call::Aborted, rewind_to_10()]);
    assert_eq!(f.state.tasks[0].2, 10);
}

#[test]
fn a_barrier_error_aborts_and_rewinds() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    f.state.barrier.fail(
        "barrier",
        [Error::State {
            op: "test",
            message: "injected".into(),
        }],
    );
    assert!(matches!(
        f.cycle().unwrap(),
        Outcome::Aborted(Error::State { .. })
    ));
    assert_eq!(
        f.calls(),
        vec![
            Call::Begin,
            Call::Barrier,
            Call::Abort,
            Call::Aborted,
            rewind_to_10()
        ]
    );
}

#[test]
fn a_retriable_send_offsets_is_retried_with_the_same_offsets() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    f.fail(
        "send_offsets",
        [
            retriable(KafkaOp::SendOffsets),
            retriable(KafkaOp::SendOffsets),
        ],
    );
    assert!(matches!(f.cycle().unwrap(), Outcome::Committed));
    let offsets = Call::SendOffsets(vec![(task(0), 15)]);
    assert_eq!(
        f.calls(),
        vec![
            Call::Begin,
            Call::Barrier,
            Call::Membership,
            offsets.clone(),
            offsets.clone(),
            offsets,
            Call::Commit,
            Call::Committed,
        ]
    );
}

#[test]
fn send_offsets_retriable_past_the_retries_aborts() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    f.fail(
        "send_offsets",
        (0..10).map(|_| retriable(KafkaOp::SendOffsets)),
    );
    assert!(matches!(f.cycle().unwrap(), Outcome::Aborted(_)));
    let calls = f.calls();
    let sends = calls
        .iter()
        .filter(|c| matches!(c, Call::SendOffsets(_)))
        .count();
    assert_eq!(sends, 6, "1 call + max_retries (5): {calls:?}");
    assert_ends_aborted_and_rewound(&calls);
}

#[test]
fn a_commit_whose_outcome_is_unknown_stops_without_another_transactional_call() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    f.fail(
        "commit",
        (0..10).map(|_| retriable(KafkaOp::CommitTransaction)),
    );
    let err = f.cycle().unwrap_err();
    assert!(
        matches!(err, Error::CommitOutcomeUnknown { attempts: 6, .. }),
        "{err}"
    );
    let calls = f.calls();
    assert!(
        !calls.contains(&Call::Abort),
        "no abort after an unknown commit: {calls:?}"
    );
    assert!(!calls.contains(&Call::Committed), "{calls:?}");
    // Whatever the worker does next, the producer is not used again.
    assert!(f.committer.before_record().is_err());
    assert!(f.cycle().is_err());
    f.committer
        .abort_and_rewind(&mut f.state, &mut f.group, &BTreeSet::new())
        .unwrap();
    assert_eq!(f.calls(), vec![Call::Aborted, rewind_to_10()]);
}

#[test]
fn a_fenced_commit_is_fatal_and_aborts_best_effort() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    f.fail("commit", [fenced(KafkaOp::CommitTransaction)]);
    let err = f.cycle().unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    let calls = f.calls();
    assert_ends_aborted_and_rewound(&calls);
}

#[test]
fn fencing_after_the_transaction_timeout_is_reported_as_a_timeout() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    let txn = MemoryTransactions {
        log: f.log.clone(),
        script: Script::default(),
    };
    let config = Config::new("app", "127.0.0.1:1");
    f.committer = Committer::new(&config, txn, Arc::new(Stats::default()), f.poison.clone())
        .with_backoff(Duration::ZERO)
        .with_transaction_timeout(Duration::ZERO);
    f.process_five();
    f.fail("commit", [fenced(KafkaOp::CommitTransaction)]);
    let err = f.cycle().unwrap_err();
    assert!(matches!(err, Error::TransactionTimedOut { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("longer than transaction_timeout_ms"),
        "{err}"
    );
}

#[test]
fn a_lost_assignment_is_not_committed() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.group.membership.lost = true;
    f.process_five();
    let outcome = f.cycle().unwrap();
    assert!(
        matches!(&outcome, Outcome::Aborted(Error::MembershipLost { reason }) if reason.contains("assignment was lost")),
        "{outcome:?}"
    );
    assert_eq!(
        f.calls(),
        vec![
            Call::Begin,
            Call::Barrier,
            Call::Membership,
            Call::Abort,
            Call::Aborted,
            rewind_to_10()
        ]
    );
}

#[test]
fn reset_group_metadata_is_never_sent() {
    // librdkafka resets these on ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / leaving; the
    // broker would accept an empty member id with generation -1 without any check.
    // A reset member id: the group removed this member (a zombie) and it stops, as an
    // UNKNOWN_MEMBER_ID would stop it; a reset generation or changed metadata abort the
    // cycle, which is replayed once the consumer has rejoined.
    let resets = [
        ("", -1, Some("metadata"), true),
        ("", 3, Some("metadata"), true),
        ("member-1", -1, Some("metadata"), false),
        ("member-1", 3, None, false),
    ];
    for (member_id, generation, metadata, stops) in resets {
        let mut f = Fixture::new(Guarantee::ExactlyOnce);
        f.group.membership = Membership {
            lost: false,
            member_id: member_id.into(),
            generation,
            metadata,
        };
        f.process_five();
        match f.cycle() {
            Err(Error::Fenced { .. }) if stops => {}
            Ok(Outcome::Aborted(Error::MembershipLost { .. })) if !stops => {}
            other => panic!("{member_id:?}/{generation}: {other:?}"),
        }
        let calls = f.calls();
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, Call::SendOffsets(_) | Call::Commit)),
            "{calls:?}"
        );
        assert_ends_aborted_and_rewound(&calls);
    }
}

#[test]
fn a_poisoned_worker_aborts_instead_of_committing() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    let _ = f
        .poison
        .record("map-1", "on record in/0@14".into(), "boom".into());
    let err = f.cycle().unwrap_err();
    assert!(matches!(err, Error::Panicked { .. }), "{err}");
    assert_eq!(
        f.calls(),
        vec![Call::Begin, Call::Abort, Call::Aborted, rewind_to_10()]
    );
    assert!(
        f.committer.before_record().is_err(),
        "nothing begins once poisoned"
    );
}

#[test]
fn a_panic_during_the_barrier_aborts() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    // The barrier's operator code panicked (caught by its node), and returned Ok anyway.
    let poison = f.poison.clone();
    f.state.barrier = Script::default();
    let _ = poison.record("count", "in on_barrier of task in/0".into(), "boom".into());
    let err = f.cycle().unwrap_err();
    assert!(matches!(err, Error::Panicked { .. }));
    assert!(!f.calls().contains(&Call::Commit));
}

#[test]
fn a_failed_abort_leaves_the_producer_unused() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.process_five();
    f.state.barrier.fail(
        "barrier",
        [Error::State {
            op: "test",
            message: "injected".into(),
        }],
    );
    f.fail("abort", [abortable(KafkaOp::AbortTransaction)]);
    assert!(
        f.cycle().is_err(),
        "a cycle that cannot be aborted stops the worker"
    );
    let _ = f.calls();
    assert!(f.committer.before_record().is_err());
    assert_eq!(
        f.calls(),
        vec![],
        "no begin after an abort whose outcome is unknown"
    );
}

#[test]
fn at_least_once_flushes_then_commits_offsets() {
    let mut f = Fixture::new(Guarantee::AtLeastOnce);
    f.process_five();
    assert!(matches!(f.cycle().unwrap(), Outcome::Committed));
    assert_eq!(
        f.calls(),
        vec![
            Call::Barrier,
            Call::Membership,
            Call::Flush,
            Call::CommitOffsets(vec![(task(0), 15)]),
            Call::Committed,
        ]
    );
}

#[test]
fn at_least_once_does_not_commit_offsets_past_a_failed_delivery() {
    let mut f = Fixture::new(Guarantee::AtLeastOnce);
    f.process_five();
    f.fail("flush", [abortable(KafkaOp::Produce)]);
    assert!(matches!(f.cycle().unwrap(), Outcome::Aborted(_)));
    let calls = f.calls();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::CommitOffsets(_))),
        "{calls:?}"
    );
    assert_eq!(calls[calls.len() - 2..], [Call::Aborted, rewind_to_10()]);
}

#[test]
fn auto_commit_only_flushes_operators() {
    let mut f = Fixture::new(Guarantee::AutoCommit);
    f.process_five();
    assert!(matches!(f.cycle().unwrap(), Outcome::Committed));
    assert_eq!(f.calls(), vec![Call::Barrier, Call::Committed]);
}

#[test]
fn a_revoked_task_is_not_rewound() {
    let mut f = Fixture::new(Guarantee::ExactlyOnce);
    f.state.tasks.push((task(1), None, 20));
    f.process_five();
    f.state.tasks[1].1 = Some(20);
    f.state.tasks[1].2 = 25;
    let leaving: BTreeSet<TaskId> = [task(1)].into();
    f.committer
        .abort_and_rewind(&mut f.state, &mut f.group, &leaving)
        .unwrap();
    assert_eq!(
        f.calls(),
        vec![Call::Begin, Call::Abort, Call::Aborted, rewind_to_10()]
    );
}
