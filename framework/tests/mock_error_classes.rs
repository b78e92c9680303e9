//! How client-side errors of each transactional call are classified, on librdkafka's mock
//! cluster.
//!
//! **These tests say nothing about exactly-once.** librdkafka's mock cluster does not honour
//! aborted transactions (its Fetch responses list no aborted transactions, so a
//! `read_committed` consumer is not shielded from aborted records) nor transactional offset
//! commits (`TxnOffsetCommit` is answered without storing the offsets or checking the member
//! and generation). Exactly-once is checked by the real-broker tests, never here.
//!
//! What is checked here is only how client-side errors are classified. A request error is
//! injected (`MockCluster::request_errors`) into the protocol request behind one
//! transactional call (`InitProducerId`, `AddOffsetsToTxn`, `TxnOffsetCommit`, `EndTxn`,
//! `Produce`, `AddPartitionsToTxn`); the call fails with the error librdkafka builds from it
//! (retriable, abortable or fatal); and `exactly_framework::Error::kafka(op, error).action()`
//! must tell the commit cycle what to do: [`Action::Retry`] the same call, [`Action::Abort`]
//! the transaction and go on, or [`Action::Fatal`] (stop). Where the action allows it, the
//! test then does what it says (calls again, or aborts) and checks that the producer goes on.
//!
//! Each check also pins librdkafka's own flags (`is_retriable`, `txn_requires_abort`,
//! `is_fatal`) and error code, so that a change of librdkafka's classification shows up here
//! by name. Where librdkafka behaved differently from what one might expect, a comment says
//! what was observed (librdkafka 2.12.1, rust-rdkafka 0.39).

use exactly_framework::{Action, Error, KafkaOp};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr::*;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

type Mock = MockCluster<'static, DefaultProducerContext>;

/// The runtime's kind of producer: a background thread serves the delivery reports that
/// `commit_transaction` and `abort_transaction` wait for.
type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// Input topic of the simulated worker (its offsets go into the transaction).
const INPUT: &str = "classes-in";
/// Output topic (its records are produced in the transaction).
const OUTPUT: &str = "classes-out";
const GROUP: &str = "classes-group";

/// Timeout of calls that must time out while injected errors are still being retried
/// (shorter than librdkafka's 500 ms `InitProducerId` retry interval).
const SHORT: Duration = Duration::from_millis(300);
/// Timeout of calls that must succeed.
const LONG: Duration = Duration::from_secs(10);
/// Enough retriable errors to outlast [`SHORT`] by far.
const MANY: usize = 200;

/// A three-broker mock cluster (as librdkafka's own transaction tests use) with both topics.
fn cluster() -> Mock {
    let mock = MockCluster::new(3).expect("create the mock cluster");
    mock.create_topic(INPUT, 3, 1)
        .expect("create the input topic");
    mock.create_topic(OUTPUT, 3, 1)
        .expect("create the output topic");
    mock
}

/// A transactional producer on `mock`, not yet initialised.
fn producer(mock: &Mock, transactional_id: &str) -> TxnProducer {
    ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "10000")
        .set("message.timeout.ms", "10000")
        // Retry protocol requests quickly, so that a few injected retriable errors are worked
        // through in well under a second.
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "50")
        .create()
        .expect("create a transactional producer")
}

/// A transactional producer on `mock` whose `init_transactions` succeeded.
fn ready_producer(mock: &Mock, transactional_id: &str) -> TxnProducer {
    let p = producer(mock, transactional_id);
    p.init_transactions(LONG).unwrap_or_else(|e| {
        panic!(
            "init_transactions without injected errors: {}",
            describe(&e)
        )
    });
    p
}

/// Queues one output record in the open transaction.
fn produce_one(p: &TxnProducer) {
    p.send(
        BaseRecord::<str, str>::to(OUTPUT)
            .key("k")
            .payload("v")
            .partition(0),
    )
    .map_err(|(e, _)| e)
    .expect("enqueue an output record");
}

/// A consumer that joined `GROUP` on `mock` and was given input partitions, and its group
/// metadata (member id and generation), as the worker passes it to
/// `send_offsets_to_transaction`. Keep the consumer alive while the metadata is used.
fn joined_member(mock: &Mock) -> (BaseConsumer, ConsumerGroupMetadata) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create the consumer");
    c.subscribe(&[INPUT]).expect("subscribe");
    // The mock cluster delays the first join of a group by its
    // group.initial.rebalance.delay.ms (3 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "the consumer did not join the mock group in 20 s"
        );
        if let Some(Err(e)) = c.poll(Duration::from_millis(100)) {
            panic!("consumer error while joining: {e}");
        }
    }
    let md = c
        .group_metadata()
        .expect("a group member has group metadata");
    (c, md)
}

/// The offsets the worker would send: the next offset of two input partitions.
fn offsets() -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(INPUT, 0, Offset::Offset(12))
        .expect("offset");
    tpl.add_partition_offset(INPUT, 1, Offset::Offset(7))
        .expect("offset");
    tpl
}

/// The flags librdkafka set on a transactional error (exactly one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `is_retriable`.
    Retriable,
    /// `txn_requires_abort`.
    Abortable,
    /// `is_fatal`.
    Fatal,
}

/// What a failed call must look like.
#[derive(Debug, Clone, Copy)]
struct Expect {
    /// The error code librdkafka reports (after its own normalisation: the broker's
    /// `PRODUCER_FENCED` and `INVALID_PRODUCER_EPOCH` become `__FENCED`).
    code: RDKafkaErrorCode,
    /// Another code accepted instead of `code`, where timing decides which is reported.
    or_code: Option<RDKafkaErrorCode>,
    /// librdkafka's class.
    class: Class,
    /// What the framework must make of it.
    action: Action,
    /// Whether the framework must report it as [`Error::Fenced`].
    fenced: bool,
}

impl Expect {
    const fn retry(code: RDKafkaErrorCode) -> Self {
        Expect {
            code,
            or_code: None,
            class: Class::Retriable,
            action: Action::Retry,
            fenced: false,
        }
    }

    const fn abort(code: RDKafkaErrorCode) -> Self {
        Expect {
            code,
            or_code: None,
            class: Class::Abortable,
            action: Action::Abort,
            fenced: false,
        }
    }

    /// Abortable for librdkafka. For the framework too, unless it is an authorization
    /// error: librdkafka lets the transaction be aborted, but the next one would be refused
    /// the same way, so the framework aborts and stops (`Error::NotAuthorized`, fatal)
    /// instead of replaying into the same refusal.
    fn abortable(code: RDKafkaErrorCode) -> Self {
        use RDKafkaErrorCode as C;
        let refused = matches!(
            code,
            C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::ClusterAuthorizationFailed
        );
        Expect {
            action: if refused {
                Action::Fatal
            } else {
                Action::Abort
            },
            ..Expect::abort(code)
        }
    }

    /// Fatal for librdkafka, and for the framework.
    const fn fatal(code: RDKafkaErrorCode, fenced: bool) -> Self {
        Expect {
            code,
            or_code: None,
            class: Class::Fatal,
            action: Action::Fatal,
            fenced,
        }
    }
}

/// A Kafka error with the flags librdkafka set, for messages.
fn describe(e: &KafkaError) -> String {
    match e {
        KafkaError::Transaction(t) => format!(
            "{} [{}: retriable={}, txn_requires_abort={}, fatal={}]",
            t.string(),
            t.name(),
            t.is_retriable(),
            t.txn_requires_abort(),
            t.is_fatal()
        ),
        other => format!("{other} ({other:?})"),
    }
}

/// Checks a failed transactional call: librdkafka's code and class, then the framework's
/// classification. Returns the classified error.
#[track_caller]
fn check(what: &str, op: KafkaOp, result: KafkaResult<()>, expect: Expect) -> Error {
    let err = match result {
        Ok(()) => panic!("{what}: expected {op} to fail, it succeeded"),
        Err(e) => e,
    };
    let seen = describe(&err);
    let KafkaError::Transaction(t) = &err else {
        panic!("{what}: expected a transactional error from {op}, got {seen}");
    };
    assert!(
        t.code() == expect.code || Some(t.code()) == expect.or_code,
        "{what}: librdkafka's error code should be {:?}{}; got {seen}",
        expect.code,
        expect
            .or_code
            .map(|c| format!(" or {c:?}"))
            .unwrap_or_default()
    );
    let flags = (t.is_retriable(), t.txn_requires_abort(), t.is_fatal());
    let want = match expect.class {
        Class::Retriable => (true, false, false),
        Class::Abortable => (false, true, false),
        Class::Fatal => (false, false, true),
    };
    assert_eq!(
        flags, want,
        "{what}: librdkafka's (retriable, txn_requires_abort, fatal) should be {:?}; got {seen}",
        expect.class
    );
    let classified = Error::kafka(op, err);
    let action = classified.action();
    println!(
        "{what}: {seen} -> {action:?}, fenced={}",
        matches!(classified, Error::Fenced { .. })
    );
    assert_eq!(
        action, expect.action,
        "{what}: Error::kafka({op:?}, ..).action() for {seen}; classified as {classified:?}"
    );
    assert_eq!(
        matches!(classified, Error::Fenced { .. }),
        expect.fenced,
        "{what}: whether the framework reports fencing for {seen}; classified as {classified:?}"
    );
    classified
}

/// Runs a whole transaction (one output record, the input offsets if `md` is given) and
/// commits it: the producer is usable.
#[track_caller]
fn commit_clean_transaction(what: &str, p: &TxnProducer, md: Option<&ConsumerGroupMetadata>) {
    p.begin_transaction()
        .unwrap_or_else(|e| panic!("{what}: begin_transaction: {}", describe(&e)));
    produce_one(p);
    if let Some(md) = md {
        p.send_offsets_to_transaction(&offsets(), md, LONG)
            .unwrap_or_else(|e| panic!("{what}: send_offsets_to_transaction: {}", describe(&e)));
    }
    p.commit_transaction(LONG)
        .unwrap_or_else(|e| panic!("{what}: commit_transaction: {}", describe(&e)));
}

/// Aborts after an abortable error, as the commit cycle does.
#[track_caller]
fn abort_after(what: &str, p: &TxnProducer) {
    p.abort_transaction(LONG)
        .unwrap_or_else(|e| panic!("abort_transaction after {what}: {}", describe(&e)));
}

/// After the transaction of a record the broker rejected was aborted, the worker goes on.
///
/// Observed: librdkafka does not bump the producer epoch when it aborts a transaction whose
/// record failed in a Produce request, so the next record on that partition leaves a gap in
/// the sequence numbers. The broker rejects it (`OUT_OF_ORDER_SEQUENCE_NUMBER`), librdkafka
/// bumps the epoch and makes that next transaction abortable too ("skipped sequence
/// numbers"); the one after commits. A real broker checks sequence numbers the same way, so
/// one rejected record costs the worker two aborted cycles in a row.
#[track_caller]
fn goes_on_after_a_rejected_record(
    what: &str,
    p: &TxnProducer,
    md: Option<&ConsumerGroupMetadata>,
) {
    p.begin_transaction().expect("begin_transaction");
    produce_one(p);
    p.flush(LONG).expect("flush");
    check(
        &format!("the transaction after {what}"),
        KafkaOp::CommitTransaction,
        p.commit_transaction(LONG),
        Expect::abort(RDKafkaErrorCode::OutOfOrderSequenceNumber),
    );
    abort_after(&format!("the sequence gap left by {what}"), p);
    commit_clean_transaction(&format!("two aborts after {what}"), p, md);
}

// ---------------------------------------------------------------------------------------
// init_transactions (InitProducerId)
// ---------------------------------------------------------------------------------------

/// Retriable `InitProducerId` errors are retried inside librdkafka (every 500 ms); a call
/// whose timeout runs out first is retriable, and calling it again resumes the same
/// initialisation, which succeeds once the injected errors are used up.
#[test]
fn init_transactions_timeout_is_retry_and_resumes() {
    let mock = cluster();
    mock.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 3],
    );
    let p = producer(&mock, "init-retry");
    check(
        "init_transactions: InitProducerId COORDINATOR_LOAD_IN_PROGRESS x3, 300 ms timeout",
        KafkaOp::InitTransactions,
        p.init_transactions(SHORT),
        // Observed: on timeout, init_transactions reports the last InitProducerId error
        // (flagged retriable) if one has arrived, else a retriable `__TIMED_OUT`.
        Expect {
            or_code: Some(RDKafkaErrorCode::OperationTimedOut),
            ..Expect::retry(RDKafkaErrorCode::CoordinatorLoadInProgress)
        },
    );
    // What `with_retries` does: the same call again. No error is cleared: the remaining
    // injected errors are used up by librdkafka's own retries.
    p.init_transactions(LONG).unwrap_or_else(|e| {
        panic!(
            "init_transactions must resume once the errors are used up: {}",
            describe(&e)
        )
    });
    commit_clean_transaction("after a resumed init_transactions", &p, None);
}

/// Authorisation errors on `InitProducerId` are fatal.
#[test]
fn init_transactions_authorization_errors_are_fatal() {
    let mock = cluster();
    let scenarios = [
        (
            RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            // Fatal, but a permissions problem, not fencing: reported as Error::Kafka.
            Expect::fatal(RDKafkaErrorCode::TransactionalIdAuthorizationFailed, false),
        ),
        (
            RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
            Expect::fatal(RDKafkaErrorCode::ClusterAuthorizationFailed, false),
        ),
    ];
    for (i, (injected, expect)) in scenarios.into_iter().enumerate() {
        mock.request_errors(RDKafkaApiKey::InitProducerId, &[injected]);
        let p = producer(&mock, &format!("init-auth-{i}"));
        check(
            &format!("init_transactions: InitProducerId {injected:?}"),
            KafkaOp::InitTransactions,
            p.init_transactions(LONG),
            expect,
        );
    }
}

// ---------------------------------------------------------------------------------------
// send_offsets_to_transaction (AddOffsetsToTxn to the transaction coordinator, then
// TxnOffsetCommit to the group coordinator)
// ---------------------------------------------------------------------------------------

/// Abortable errors of `send_offsets_to_transaction`: the framework aborts, the abort
/// succeeds, and the next transaction (with offsets) commits. (The group authorization
/// errors are abortable for librdkafka; the framework aborts, then stops: see
/// `Expect::abortable`.)
#[test]
fn send_offsets_abortable_errors_abort_and_the_worker_goes_on() {
    let mock = cluster();
    let (_consumer, md) = joined_member(&mock);
    let p = ready_producer(&mock, "offsets-abort");
    commit_clean_transaction("before any injected error", &p, Some(&md));

    let scenarios = [
        (
            RDKafkaApiKey::AddOffsetsToTxn,
            RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ),
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ),
        // A stale generation (e.g. a cooperative rebalance): the framework deliberately
        // aborts and goes on instead of stopping (see `is_fencing_code` in error.rs).
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
            RDKafkaErrorCode::IllegalGeneration,
        ),
    ];
    for (api, injected, code) in scenarios {
        let what = format!("send_offsets_to_transaction: {api:?} {injected:?}");
        p.begin_transaction().expect("begin_transaction");
        produce_one(&p);
        mock.request_errors(api, &[injected]);
        check(
            &what,
            KafkaOp::SendOffsets,
            p.send_offsets_to_transaction(&offsets(), &md, LONG),
            Expect::abortable(code),
        );
        // The commit is refused with the same error: the transaction can only be aborted.
        check(
            &format!("commit_transaction after {what}"),
            KafkaOp::CommitTransaction,
            p.commit_transaction(LONG),
            Expect::abortable(code),
        );
        abort_after(&what, &p);
        commit_clean_transaction(&format!("after aborting {what}"), &p, Some(&md));
    }

    // A record of this transaction was rejected: send_offsets_to_transaction is the first
    // call of the commit cycle to report it.
    let what = "send_offsets_to_transaction after Produce MSG_SIZE_TOO_LARGE";
    p.begin_transaction().expect("begin_transaction");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    produce_one(&p);
    // The worker drains the producer before the commit cycle.
    p.flush(LONG).expect("flush");
    check(
        what,
        KafkaOp::SendOffsets,
        p.send_offsets_to_transaction(&offsets(), &md, LONG),
        Expect::abort(RDKafkaErrorCode::MessageSizeTooLarge),
    );
    abort_after(what, &p);
    goes_on_after_a_rejected_record(what, &p, Some(&md));
}

/// Retriable errors of `send_offsets_to_transaction`:
/// - a few are retried inside librdkafka and never reach the caller;
/// - on `AddOffsetsToTxn`, past the call's timeout they come back retriable (with the
///   broker's code) and calling again succeeds;
/// - on `TxnOffsetCommit`, past the call's timeout librdkafka turns them into an abortable
///   error (observed; its handler marks the timed-out retry as permanent): the framework
///   aborts.
#[test]
fn send_offsets_retriable_errors_retry_or_abort() {
    let mock = cluster();
    let (_consumer, md) = joined_member(&mock);
    let p = ready_producer(&mock, "offsets-retry");

    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    mock.request_errors(
        RDKafkaApiKey::AddOffsetsToTxn,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
        ],
    );
    mock.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        ],
    );
    p.send_offsets_to_transaction(&offsets(), &md, LONG)
        .unwrap_or_else(|e| {
            panic!(
                "a few retriable AddOffsetsToTxn/TxnOffsetCommit errors are retried inside: {}",
                describe(&e)
            )
        });
    p.commit_transaction(LONG)
        .unwrap_or_else(|e| panic!("commit after retried send_offsets: {}", describe(&e)));

    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    mock.request_errors(
        RDKafkaApiKey::AddOffsetsToTxn,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; MANY],
    );
    check(
        "send_offsets_to_transaction: AddOffsetsToTxn COORDINATOR_LOAD_IN_PROGRESS past the timeout",
        KafkaOp::SendOffsets,
        p.send_offsets_to_transaction(&offsets(), &md, SHORT),
        Expect::retry(RDKafkaErrorCode::CoordinatorLoadInProgress),
    );
    mock.clear_request_errors(RDKafkaApiKey::AddOffsetsToTxn);
    p.send_offsets_to_transaction(&offsets(), &md, LONG)
        .unwrap_or_else(|e| panic!("send_offsets_to_transaction called again: {}", describe(&e)));
    p.commit_transaction(LONG)
        .unwrap_or_else(|e| panic!("commit after a retried send_offsets: {}", describe(&e)));

    let what = "send_offsets_to_transaction: TxnOffsetCommit COORDINATOR_LOAD_IN_PROGRESS past the timeout";
    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    mock.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; MANY],
    );
    check(
        what,
        KafkaOp::SendOffsets,
        p.send_offsets_to_transaction(&offsets(), &md, SHORT),
        Expect::abort(RDKafkaErrorCode::CoordinatorLoadInProgress),
    );
    mock.clear_request_errors(RDKafkaApiKey::TxnOffsetCommit);
    abort_after(what, &p);
    commit_clean_transaction(&format!("after aborting {what}"), &p, Some(&md));
}

/// Fencing errors of `send_offsets_to_transaction`: the framework reports
/// [`Error::Fenced`] and stops, whatever class librdkafka gave them.
#[test]
fn send_offsets_fencing_errors_are_fatal() {
    let mock = cluster();
    let (_consumer, md) = joined_member(&mock);
    let fenced = RDKafkaErrorCode::Fenced;
    let scenarios = [
        (
            RDKafkaApiKey::AddOffsetsToTxn,
            RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
            Expect::fatal(fenced, true),
        ),
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
            Expect::fatal(fenced, true),
        ),
        // Observed: librdkafka's AddOffsetsToTxn and TxnOffsetCommit handlers have no case
        // for PRODUCER_FENCED: it falls into "permanent", i.e. abortable, and is only
        // renamed `__FENCED`. The framework must stop anyway (the Java client treats it as
        // fatal; aborting and going on would only be fenced again at EndTxn).
        (
            RDKafkaApiKey::AddOffsetsToTxn,
            RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
            Expect {
                class: Class::Abortable,
                ..Expect::fatal(fenced, true)
            },
        ),
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
            Expect {
                class: Class::Abortable,
                ..Expect::fatal(fenced, true)
            },
        ),
        // The group no longer knows this member, or its static instance id was taken:
        // librdkafka says abortable, the framework deliberately stops (a zombie member must
        // not go on; see `is_fencing_code` in error.rs).
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
            Expect {
                class: Class::Abortable,
                ..Expect::fatal(RDKafkaErrorCode::UnknownMemberId, true)
            },
        ),
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
            Expect {
                class: Class::Abortable,
                ..Expect::fatal(RDKafkaErrorCode::FencedInstanceId, true)
            },
        ),
    ];
    for (i, (api, injected, expect)) in scenarios.into_iter().enumerate() {
        let p = ready_producer(&mock, &format!("offsets-fenced-{i}"));
        p.begin_transaction().expect("begin_transaction");
        produce_one(&p);
        mock.request_errors(api, &[injected]);
        check(
            &format!("send_offsets_to_transaction: {api:?} {injected:?}"),
            KafkaOp::SendOffsets,
            p.send_offsets_to_transaction(&offsets(), &md, LONG),
            expect,
        );
    }
}

// ---------------------------------------------------------------------------------------
// commit_transaction (EndTxn)
// ---------------------------------------------------------------------------------------

/// A few retriable `EndTxn` errors are retried inside librdkafka.
#[test]
fn commit_transaction_transient_errors_are_retried_by_librdkafka() {
    let mock = cluster();
    let p = ready_producer(&mock, "commit-transient");
    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    p.flush(LONG).expect("flush");
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
        ],
    );
    p.commit_transaction(LONG).unwrap_or_else(|e| {
        panic!(
            "a few retriable EndTxn errors are retried inside: {}",
            describe(&e)
        )
    });
}

/// Retriable `EndTxn` errors past the timeout: a retriable `__TIMED_OUT`, and the same call
/// resumes and commits.
#[test]
fn commit_transaction_timeout_is_retry_and_resumes() {
    let mock = cluster();
    let p = ready_producer(&mock, "commit-retry");
    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; MANY],
    );
    check(
        "commit_transaction: EndTxn COORDINATOR_LOAD_IN_PROGRESS past the timeout",
        KafkaOp::CommitTransaction,
        p.commit_transaction(SHORT),
        Expect::retry(RDKafkaErrorCode::OperationTimedOut),
    );
    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    p.commit_transaction(LONG)
        .unwrap_or_else(|e| panic!("commit_transaction must resume: {}", describe(&e)));
    commit_clean_transaction("after a resumed commit", &p, None);
}

/// While a timed-out `commit_transaction` is unfinished, `abort_transaction` (and
/// `begin_transaction`) fail with `__CONFLICT`, which librdkafka flags retriable, so the
/// framework says Retry; but calling abort again conflicts again, at once, for as long as
/// the commit is not resumed. Only calling `commit_transaction` again completes it.
///
/// This is why the commit cycle, when `with_retries` gives up on a commit that keeps timing
/// out, stops the worker without aborting (the outcome is unknown) instead of aborting.
#[test]
fn abort_transaction_while_a_commit_is_unfinished_conflicts() {
    let mock = cluster();
    let p = ready_producer(&mock, "commit-conflict");
    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    p.flush(LONG).expect("flush");
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; MANY],
    );
    check(
        "commit_transaction: EndTxn COORDINATOR_LOAD_IN_PROGRESS past the timeout",
        KafkaOp::CommitTransaction,
        p.commit_transaction(SHORT),
        Expect::retry(RDKafkaErrorCode::OperationTimedOut),
    );
    for attempt in 1..=3 {
        check(
            &format!("abort_transaction #{attempt} during the unfinished commit"),
            KafkaOp::AbortTransaction,
            p.abort_transaction(SHORT),
            Expect::retry(RDKafkaErrorCode::Conflict),
        );
    }
    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    p.commit_transaction(LONG)
        .unwrap_or_else(|e| panic!("the resumed commit_transaction: {}", describe(&e)));
    commit_clean_transaction("after the resumed commit", &p, None);
}

/// rust-rdkafka's `commit_transaction` flushes first; when records are still being retried
/// at the timeout, the flush fails (`KafkaError::Flush`, no transactional flags): the
/// framework aborts, the abort succeeds once the records get through, and the worker goes
/// on.
#[test]
fn commit_transaction_flush_timeout_is_abort() {
    let mock = cluster();
    let p = ready_producer(&mock, "commit-flush-timeout");
    p.begin_transaction().expect("begin_transaction");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; MANY],
    );
    produce_one(&p);
    let err = p
        .commit_transaction(SHORT)
        .expect_err("the record is still being retried at the timeout");
    let seen = describe(&err);
    assert!(
        matches!(err, KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)),
        "commit_transaction's flush should time out; got {seen}"
    );
    let classified = Error::kafka(KafkaOp::CommitTransaction, err);
    println!(
        "commit_transaction: Produce NOT_ENOUGH_REPLICAS past the timeout: {seen} -> {:?}",
        classified.action()
    );
    assert_eq!(
        classified.action(),
        Action::Abort,
        "a flush timeout in commit_transaction: {seen}; classified as {classified:?}"
    );
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    abort_after("a flush timeout", &p);
    commit_clean_transaction("after aborting a flush timeout", &p, None);
}

/// Abortable `EndTxn` errors: the framework aborts, `abort_transaction` succeeds (for the
/// producer-id errors librdkafka bumps the epoch), and the next transaction commits. (A
/// group authorization error is abortable too; the framework aborts, then stops.)
#[test]
fn commit_transaction_abortable_errors_abort_and_the_worker_goes_on() {
    let mock = cluster();
    let p = ready_producer(&mock, "commit-abort");
    let scenarios = [
        (
            RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
            RDKafkaErrorCode::UnknownProducerId,
        ),
        (
            RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING,
            RDKafkaErrorCode::InvalidProducerIdMapping,
        ),
        (
            RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ),
        // Any error EndTxn's handler does not know.
        (
            RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
            RDKafkaErrorCode::InvalidMessageSize,
        ),
    ];
    for (injected, code) in scenarios {
        let what = format!("commit_transaction: EndTxn {injected:?}");
        p.begin_transaction().expect("begin_transaction");
        produce_one(&p);
        mock.request_errors(RDKafkaApiKey::EndTxn, &[injected]);
        check(
            &what,
            KafkaOp::CommitTransaction,
            p.commit_transaction(LONG),
            Expect::abortable(code),
        );
        abort_after(&what, &p);
        commit_clean_transaction(&format!("after aborting {what}"), &p, None);
    }
}

/// Fencing and authorisation errors on `EndTxn` are fatal; after them, the best-effort
/// `abort_transaction` of the commit cycle and any `begin_transaction` are fatal too.
#[test]
fn commit_transaction_fatal_errors_stop_the_worker() {
    let mock = cluster();
    let scenarios = [
        (RD_KAFKA_RESP_ERR_PRODUCER_FENCED, RDKafkaErrorCode::Fenced),
        (
            RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
            RDKafkaErrorCode::Fenced,
        ),
        (
            RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        ),
    ];
    for (i, (injected, code)) in scenarios.into_iter().enumerate() {
        let what = format!("commit_transaction: EndTxn {injected:?}");
        let p = ready_producer(&mock, &format!("commit-fatal-{i}"));
        p.begin_transaction().expect("begin_transaction");
        produce_one(&p);
        mock.request_errors(RDKafkaApiKey::EndTxn, &[injected]);
        // All three stop the worker; the two epoch errors are fencing (Error::Fenced), the
        // authorization failure is reported as what it is (Error::Kafka).
        let fenced = code != RDKafkaErrorCode::TransactionalIdAuthorizationFailed;
        let fatal = Expect::fatal(code, fenced);
        check(
            &what,
            KafkaOp::CommitTransaction,
            p.commit_transaction(LONG),
            fatal,
        );
        // The commit cycle then aborts best-effort: that fails fatally, never "retry".
        check(
            &format!("abort_transaction after {what}"),
            KafkaOp::AbortTransaction,
            p.abort_transaction(LONG),
            fatal,
        );
        check(
            &format!("begin_transaction after {what}"),
            KafkaOp::BeginTransaction,
            p.begin_transaction(),
            fatal,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Produce (and AddPartitionsToTxn) inside a transaction
// ---------------------------------------------------------------------------------------

/// One transaction whose record fails with `injected` on `api`: the commit is abortable,
/// the abort succeeds, and the worker goes on.
fn rejected_record_aborts(api: RDKafkaApiKey, injected: RDKafkaRespErr, code: RDKafkaErrorCode) {
    let mock = cluster();
    let p = ready_producer(&mock, "produce-abort");
    let what = format!("commit_transaction after {api:?} {injected:?}");
    p.begin_transaction().expect("begin_transaction");
    mock.request_errors(api, &[injected]);
    produce_one(&p);
    check(
        &what,
        KafkaOp::CommitTransaction,
        p.commit_transaction(LONG),
        Expect::abortable(code),
    );
    abort_after(&what, &p);
    if api == RDKafkaApiKey::Produce {
        goes_on_after_a_rejected_record(&what, &p, None);
    } else {
        // The record was never sent (its partition could not be added to the
        // transaction): no sequence gap, the next transaction commits at once.
        commit_clean_transaction(&format!("after aborting {what}"), &p, None);
    }
}

/// A record the broker rejects as too large makes the commit abortable.
#[test]
fn produce_message_too_large_makes_the_commit_abortable() {
    rejected_record_aborts(
        RDKafkaApiKey::Produce,
        RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        RDKafkaErrorCode::MessageSizeTooLarge,
    );
}

/// A record the broker refuses for authorisation makes the commit abortable for
/// librdkafka; the framework aborts and stops (`Error::NotAuthorized`).
#[test]
fn produce_topic_authorization_failed_aborts_and_stops() {
    rejected_record_aborts(
        RDKafkaApiKey::Produce,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RDKafkaErrorCode::TopicAuthorizationFailed,
    );
}

/// An output partition that cannot be added to the transaction (not authorized) makes the
/// commit abortable for librdkafka; the framework aborts and stops (`Error::NotAuthorized`).
#[test]
fn add_partitions_failure_aborts_and_stops() {
    rejected_record_aborts(
        RDKafkaApiKey::AddPartitionsToTxn,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RDKafkaErrorCode::TopicAuthorizationFailed,
    );
}

/// A few retriable produce errors are retried by the idempotent producer and never reach
/// the commit.
#[test]
fn retriable_produce_errors_are_retried_by_librdkafka() {
    let mock = cluster();
    let p = ready_producer(&mock, "produce-transient");
    p.begin_transaction().expect("begin_transaction");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    produce_one(&p);
    p.commit_transaction(LONG).unwrap_or_else(|e| {
        panic!(
            "a few retriable produce errors are retried inside: {}",
            describe(&e)
        )
    });
}

/// A record rejected because the producer's epoch is stale: fenced, fatal.
#[test]
fn a_fenced_produce_is_fatal() {
    let mock = cluster();
    let p = ready_producer(&mock, "produce-fenced");
    p.begin_transaction().expect("begin_transaction");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH],
    );
    produce_one(&p);
    check(
        "commit_transaction after Produce INVALID_PRODUCER_EPOCH",
        KafkaOp::CommitTransaction,
        p.commit_transaction(LONG),
        Expect::fatal(RDKafkaErrorCode::Fenced, true),
    );
}

// ---------------------------------------------------------------------------------------
// abort_transaction (EndTxn)
// ---------------------------------------------------------------------------------------

/// Retriable `EndTxn` errors on abort past the timeout: a retriable `__TIMED_OUT`, and the
/// same call resumes and aborts.
#[test]
fn abort_transaction_timeout_is_retry_and_resumes() {
    let mock = cluster();
    let p = ready_producer(&mock, "abort-retry");
    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    // With nothing sent yet in the transaction, librdkafka aborts without any EndTxn.
    p.flush(LONG).expect("flush");
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RD_KAFKA_RESP_ERR_NOT_COORDINATOR; MANY],
    );
    check(
        "abort_transaction: EndTxn NOT_COORDINATOR past the timeout",
        KafkaOp::AbortTransaction,
        p.abort_transaction(SHORT),
        Expect::retry(RDKafkaErrorCode::OperationTimedOut),
    );
    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    p.abort_transaction(LONG)
        .unwrap_or_else(|e| panic!("abort_transaction must resume: {}", describe(&e)));
    commit_clean_transaction("after a resumed abort", &p, None);
}

/// Producer-id errors on abort are recovered inside librdkafka (epoch bump): the abort
/// succeeds and the producer goes on.
#[test]
fn abort_transaction_recovers_from_producer_id_errors() {
    let mock = cluster();
    let p = ready_producer(&mock, "abort-pid");
    for injected in [
        RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
        RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING,
    ] {
        p.begin_transaction().expect("begin_transaction");
        produce_one(&p);
        // Make sure the abort sends an EndTxn (see above).
        p.flush(LONG).expect("flush");
        mock.request_errors(RDKafkaApiKey::EndTxn, &[injected]);
        p.abort_transaction(LONG).unwrap_or_else(|e| {
            panic!(
                "abort_transaction: EndTxn {injected:?} is recovered by an epoch bump: {}",
                describe(&e)
            )
        });
        // Also shows the injected error was used by the abort: a left-over one would fail
        // this commit.
        commit_clean_transaction(&format!("after EndTxn {injected:?} on abort"), &p, None);
    }
}

/// A fenced abort is fatal.
#[test]
fn abort_transaction_fencing_is_fatal() {
    let mock = cluster();
    let p = ready_producer(&mock, "abort-fenced");
    p.begin_transaction().expect("begin_transaction");
    produce_one(&p);
    p.flush(LONG).expect("flush");
    mock.request_errors(RDKafkaApiKey::EndTxn, &[RD_KAFKA_RESP_ERR_PRODUCER_FENCED]);
    check(
        "abort_transaction: EndTxn PRODUCER_FENCED",
        KafkaOp::AbortTransaction,
        p.abort_transaction(LONG),
        Expect::fatal(RDKafkaErrorCode::Fenced, true),
    );
}
