//! The broker's transactional behaviour that exactly builds on, checked on the real broker.
//!
//! Each test fails on a broker that does not honour transactions: librdkafka's mock
//! cluster ignores aborted transactions under read_committed (test 1), does not apply
//! transactional offset commits to the group (test 2) and does not fence by
//! `transactional.id` epoch the way a real coordinator does (test 3).

mod common;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn send(p: &rdkafka::producer::BaseProducer, topic: &str, value: &str) {
    p.send(BaseRecord::<(), str>::to(topic).payload(value).partition(0))
        .map_err(|(e, _)| e)
        .expect("send");
}

fn values(records: &[ReadRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap_or_default()).unwrap())
        .collect()
}

#[test]
fn aborted_records_are_invisible_to_read_committed() {
    let b = brokers();
    let topic = new_topic(&b, "txn-abort", 1);
    let p = transactional_producer(&b, &unique_name("txn-abort"));

    p.begin_transaction().unwrap();
    for i in 0..10 {
        send(&p, &topic, &format!("aborted-{i}"));
    }
    p.flush(T).unwrap();
    p.abort_transaction(T).unwrap();

    p.begin_transaction().unwrap();
    for i in 0..5 {
        send(&p, &topic, &format!("committed-{i}"));
    }
    p.commit_transaction(T).unwrap();

    let committed = read_to_end(&b, &topic, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    let expected: Vec<String> = (0..5).map(|i| format!("committed-{i}")).collect();
    assert_eq!(values(&committed), expected);

    let uncommitted = read_to_end(&b, &topic, Isolation::ReadUncommitted, READ_DEADLINE).unwrap();
    let mut all: Vec<String> = (0..10).map(|i| format!("aborted-{i}")).collect();
    all.extend(expected);
    assert_eq!(values(&uncommitted), all);
    delete_topic(&b, &[&topic]).unwrap();
}

fn group_consumer(brokers: &str, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

#[test]
fn send_offsets_to_transaction_moves_committed_offsets_only_on_commit() {
    let b = brokers();
    let input = new_topic(&b, "txn-offsets-in", 1);
    let output = new_topic(&b, "txn-offsets-out", 1);
    let group = unique_name("txn-offsets-group");
    produce(
        &b,
        &input,
        (0..20).map(|i| (Some(0), None::<&str>, format!("v{i}"))),
    )
    .unwrap();

    let consumer = group_consumer(&b, &group, &input);
    let p = transactional_producer(&b, &unique_name("txn-offsets"));

    // Consume 10 records, produce them, commit with their offsets.
    let consume_and_send = |n: usize| -> i64 {
        let mut next = 0;
        let mut got = 0;
        let deadline = std::time::Instant::now() + T;
        while got < n {
            // poll also serves group events (the assignment) and then returns None.
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let v = m.payload().unwrap().to_vec();
                    p.send(BaseRecord::<(), [u8]>::to(&output).payload(&v).partition(0))
                        .map_err(|(e, _)| e)
                        .unwrap();
                    next = m.offset() + 1;
                    got += 1;
                }
                Some(Err(e)) => panic!("consume: {e}"),
                None => assert!(
                    std::time::Instant::now() < deadline,
                    "no record within {T:?}"
                ),
            }
        }
        next
    };
    p.begin_transaction().unwrap();
    let next = consume_and_send(10);
    assert_eq!(next, 10);
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, 0, rdkafka::Offset::Offset(next))
        .unwrap();
    p.send_offsets_to_transaction(&offsets, &consumer.group_metadata().unwrap(), T)
        .unwrap();
    p.commit_transaction(T).unwrap();
    assert_eq!(
        committed_offsets(&b, &group, &input).unwrap(),
        vec![(0, Some(10))]
    );

    // The next 10 in a transaction that aborts: the committed offset stays at 10.
    p.begin_transaction().unwrap();
    let next = consume_and_send(10);
    assert_eq!(next, 20);
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, 0, rdkafka::Offset::Offset(next))
        .unwrap();
    p.send_offsets_to_transaction(&offsets, &consumer.group_metadata().unwrap(), T)
        .unwrap();
    // A BaseProducer's abort needs its delivery reports served first (flush polls them).
    p.flush(T).unwrap();
    p.abort_transaction(T).unwrap();
    assert_eq!(
        committed_offsets(&b, &group, &input).unwrap(),
        vec![(0, Some(10))]
    );

    let out = read_to_end(&b, &output, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    assert_eq!(
        values(&out),
        (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );
    drop(consumer);
    delete_topic(&b, &[&input, &output]).unwrap();
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let b = brokers();
    let topic = new_topic(&b, "txn-fence", 1);
    let id = unique_name("txn-fence");
    let first = transactional_producer(&b, &id);
    first.begin_transaction().unwrap();
    send(&first, &topic, "from-first");
    first.flush(T).unwrap();

    let second = transactional_producer(&b, &id);

    let err = first
        .commit_transaction(T)
        .expect_err("the fenced producer must not commit");
    match &err {
        KafkaError::Transaction(e) => assert!(e.is_fatal(), "fencing must be fatal: {err}"),
        other => panic!("expected a transaction error, got {other}"),
    }
    let classified = exactly::Error::kafka(exactly::framework::KafkaOp::CommitTransaction, err);
    assert_eq!(
        classified.action(),
        exactly::framework::Action::Fatal,
        "{classified}"
    );

    second.begin_transaction().unwrap();
    send(&second, &topic, "from-second");
    second.commit_transaction(T).unwrap();
    let out = read_to_end(&b, &topic, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    assert_eq!(values(&out), vec!["from-second".to_string()]);
    delete_topic(&b, &[&topic]).unwrap();
}
