//! How client-side transaction errors are classified, on librdkafka's mock cluster.
//!
//! The mock cluster does not honour aborted transactions or transactional offset commits,
//! so nothing here says anything about exactly-once (the real-broker tests do). These tests
//! only inject request errors into each transactional call and check that
//! `Error::kafka(..).action()` tells the commit cycle the right thing: retry, abort, or stop.

use exactly_framework::{Action, Error, KafkaOp};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;

const TOPIC: &str = "mock-topic";

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, 1, 1).expect("topic");
    mock
}

fn producer(mock: &MockCluster<'static, DefaultProducerContext>, id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "5000")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    p
}

fn send_one(p: &BaseProducer) {
    p.send(BaseRecord::<(), str>::to(TOPIC).payload("x").partition(0))
        .map_err(|(e, _)| e)
        .expect("send");
}

const SHORT: Duration = Duration::from_millis(500);
const LONG: Duration = Duration::from_secs(10);

#[test]
fn init_transactions_timeout_is_retriable_and_resumable() {
    let mock = cluster();
    mock.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 50],
    );
    let p = producer(&mock, "init-retry");
    let err = p
        .init_transactions(SHORT)
        .expect_err("the coordinator is loading");
    let classified = Error::kafka(KafkaOp::InitTransactions, err);
    assert_eq!(classified.action(), Action::Retry, "{classified}");
    mock.clear_request_errors(RDKafkaApiKey::InitProducerId);
    p.init_transactions(LONG)
        .expect("init_transactions resumes after a retriable timeout");
}

#[test]
fn a_failed_produce_makes_the_commit_abortable() {
    let mock = cluster();
    let p = producer(&mock, "produce-abort");
    p.init_transactions(LONG).unwrap();
    p.begin_transaction().unwrap();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 5],
    );
    send_one(&p);
    let err = p.commit_transaction(LONG).expect_err("a record failed");
    let classified = Error::kafka(KafkaOp::CommitTransaction, err);
    assert_eq!(classified.action(), Action::Abort, "{classified}");
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    p.abort_transaction(LONG)
        .expect("abort after an abortable error");
    p.begin_transaction()
        .expect("a new transaction after the abort");
}

#[test]
fn a_fenced_producer_is_fatal() {
    let mock = cluster();
    let p = producer(&mock, "fenced");
    p.init_transactions(LONG).unwrap();
    p.begin_transaction().unwrap();
    send_one(&p);
    p.flush(LONG).unwrap();
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let err = p.commit_transaction(LONG).expect_err("fenced");
    let classified = Error::kafka(KafkaOp::CommitTransaction, err);
    assert_eq!(classified.action(), Action::Fatal, "{classified}");
    assert!(matches!(classified, Error::Fenced { .. }), "{classified:?}");
}

#[test]
fn commit_transaction_timeout_is_retriable_and_resumable() {
    let mock = cluster();
    let p = producer(&mock, "commit-retry");
    p.init_transactions(LONG).unwrap();
    p.begin_transaction().unwrap();
    send_one(&p);
    p.flush(LONG).unwrap();
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 50],
    );
    let err = p
        .commit_transaction(SHORT)
        .expect_err("the coordinator is loading");
    let classified = Error::kafka(KafkaOp::CommitTransaction, err);
    assert_eq!(classified.action(), Action::Retry, "{classified}");
    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    p.commit_transaction(LONG)
        .expect("commit_transaction resumes");
}

fn group_metadata(
    mock: &MockCluster<'static, DefaultProducerContext>,
) -> (BaseConsumer, rdkafka::consumer::ConsumerGroupMetadata) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "mock-group")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c.group_metadata().expect("group metadata");
    (c, md)
}

fn offsets() -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(1))
        .unwrap();
    tpl
}

#[test]
fn send_offsets_errors_are_abortable_or_fencing() {
    let mock = cluster();
    let p = producer(&mock, "offsets");
    p.init_transactions(LONG).unwrap();
    let (_c, md) = group_metadata(&mock);

    // Not allowed to commit for the group: abort this transaction, the worker goes on.
    p.begin_transaction().unwrap();
    mock.request_errors(
        RDKafkaApiKey::AddOffsetsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
    );
    let err = p
        .send_offsets_to_transaction(&offsets(), &md, LONG)
        .expect_err("unauthorised");
    let classified = Error::kafka(KafkaOp::SendOffsets, err);
    assert_eq!(classified.action(), Action::Abort, "{classified}");
    p.abort_transaction(LONG).unwrap();

    // The group no longer knows this member: a zombie, which must stop.
    p.begin_transaction().unwrap();
    mock.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID],
    );
    let err = p
        .send_offsets_to_transaction(&offsets(), &md, LONG)
        .expect_err("unknown member");
    let classified = Error::kafka(KafkaOp::SendOffsets, err);
    assert!(matches!(classified, Error::Fenced { .. }), "{classified:?}");
    assert_eq!(classified.action(), Action::Fatal);
}

#[test]
fn abort_transaction_timeout_is_retriable_and_resumable() {
    let mock = cluster();
    let p = producer(&mock, "abort-retry");
    p.init_transactions(LONG).unwrap();
    p.begin_transaction().unwrap();
    send_one(&p);
    p.flush(LONG).unwrap();
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 50],
    );
    let err = p
        .abort_transaction(SHORT)
        .expect_err("the coordinator is loading");
    let classified = Error::kafka(KafkaOp::AbortTransaction, err);
    assert_eq!(classified.action(), Action::Retry, "{classified}");
    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    p.abort_transaction(LONG)
        .expect("abort_transaction resumes");
}
