//! The stream–table join on a real broker. The table topic (compacted) is written before any
//! order: a committed load, an aborted transaction that must never reach the table, then
//! committed updates and tombstones. The joins must meet exactly the final table, so the
//! expected output is known record by record, and it is compared as a whole multiset
//! (nothing lost, nothing duplicated) after a forced rebalance. The table's reader must stop
//! once the workers are gone. Failures at start (missing table topic, undecodable table
//! record) stop the worker with an error naming the culprit.

mod common;

use common::*;
use exactly::framework::{Error, Worker};
use exactly::operators::{live_tables, Table};
use exactly::prelude::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Customer {
    name: String,
    tier: String,
}

/// Customers `c0..c59` exist at first; orders also name `c60..c64`, which never do.
const CUSTOMERS: usize = 60;
const ORDER_KEYS: usize = 65;
const ORDERS: usize = 6_000;

fn customer(i: usize, tier: &str) -> String {
    serde_json::to_string(&Customer {
        name: format!("name-{i}"),
        tier: tier.to_string(),
    })
    .unwrap()
}

/// Writes one transaction of `(key, value)` records (a `None` value is a tombstone), then
/// commits or aborts it.
fn write_transaction(
    p: &BaseProducer,
    topic: &str,
    rows: &[(String, Option<String>)],
    commit: bool,
) {
    p.begin_transaction().unwrap();
    for (k, v) in rows {
        let mut r: BaseRecord<'_, str, str> = BaseRecord::to(topic).key(k.as_str());
        if let Some(v) = v {
            r = r.payload(v.as_str());
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    if commit {
        p.commit_transaction(Duration::from_secs(30)).unwrap();
    } else {
        p.flush(Duration::from_secs(30)).unwrap();
        p.abort_transaction(Duration::from_secs(30)).unwrap();
    }
}

/// Fills the table topic and returns the table every join must meet.
fn fill_table(b: &str, topic: &str) -> BTreeMap<String, Customer> {
    let p = transactional_producer(b, &unique_name("join-table-writer"));
    let key = |i: usize| format!("c{i}");
    let load: Vec<_> = (0..CUSTOMERS)
        .map(|i| (key(i), Some(customer(i, "v1"))))
        .collect();
    write_transaction(&p, topic, &load, true);
    let aborted: Vec<_> = (0..CUSTOMERS)
        .map(|i| (key(i), Some(customer(i, "ABORTED"))))
        .collect();
    write_transaction(&p, topic, &aborted, false);
    let updates: Vec<_> = (0..20)
        .map(|i| (key(i), Some(customer(i, "v2"))))
        .chain((50..CUSTOMERS).map(|i| (key(i), None)))
        .collect();
    write_transaction(&p, topic, &updates, true);
    (0..50)
        .map(|i| {
            let tier = if i < 20 { "v2" } else { "v1" };
            (key(i), serde_json::from_str(&customer(i, tier)).unwrap())
        })
        .collect()
}

/// A left join: every order comes out, with its customer or `-`.
fn joined(order: String, c: Option<&Customer>) -> Option<String> {
    Some(match c {
        Some(c) => format!("{order}|{}|{}", c.name, c.tier),
        None => format!("{order}|-"),
    })
}

fn pipeline(input: &str, output: &str, table: Table<String, Customer>) -> Pipeline {
    Pipeline::from_topic_with_key(input, Serde::string(), Serde::string())
        .join_table("customers", table, joined)
        .to_topic(output, Serde::string(), Serde::string())
}

fn order(i: usize) -> (String, String) {
    (format!("c{}", i % ORDER_KEYS), format!("o{i}"))
}

/// Sends orders `range`, keyed by customer (so partitioned by key), in batches of 150
/// every 100 ms.
fn send_orders(b: &str, input: &str, range: std::ops::Range<usize>) {
    let loader = Loader::new(b).unwrap();
    for batch in range.collect::<Vec<_>>().chunks(150) {
        loader
            .send(
                input,
                batch.iter().map(|&i| {
                    let (k, o) = order(i);
                    (None, Some(k), o)
                }),
            )
            .unwrap();
        // Pacing the feed (rate limiting, not synchronisation).
        std::thread::sleep(Duration::from_millis(100));
    }
}

type Multiset = BTreeMap<(String, String), usize>;

fn read_output(b: &str, topic: &str) -> Multiset {
    let mut got = Multiset::new();
    for r in read_to_end(b, topic, Isolation::ReadCommitted, READ_DEADLINE).unwrap() {
        let k = String::from_utf8(r.key.unwrap()).unwrap();
        let v = String::from_utf8(r.value.unwrap()).unwrap();
        *got.entry((k, v)).or_default() += 1;
    }
    got
}

/// Waits until the group has committed the whole input, failing at once with the worker's
/// error if it stops meanwhile.
fn wait_committed_while_running(w: Worker, b: &str, group: &str, input: &str) -> Worker {
    let give_up = Instant::now() + Duration::from_secs(120);
    while !caught_up(b, group, input).unwrap() {
        if w.is_finished() {
            panic!("the worker stopped: {:?}", w.join());
        }
        assert!(
            Instant::now() < give_up,
            "{input} not committed within 120 s: committed {:?}",
            committed_offsets(b, group, input).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w
}

/// Waits (bounded) until the worker has stopped on its own, and returns its error.
fn failure_of(w: Worker) -> Error {
    let give_up = Instant::now() + Duration::from_secs(90);
    while !w.is_finished() {
        assert!(Instant::now() < give_up, "the worker did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    w.join().expect_err("the worker must fail")
}

#[test]
fn join_meets_the_final_table_exactly_once_across_a_rebalance() {
    init_tracing();
    let b = brokers();
    let table_topic = unique_name("join-customers");
    create_topic_with(&b, &table_topic, 3, &[("cleanup.policy", "compact")]).unwrap();
    let input = new_topic(&b, "join-orders", 4);
    let output = new_topic(&b, "join-enriched", 4);
    let group = unique_name("join");
    let dir = std::env::temp_dir().join(unique_name("exactly-join"));

    let table = fill_table(&b, &table_topic);
    let mut expected = Multiset::new();
    for i in 0..ORDERS {
        let (k, o) = order(i);
        *expected
            .entry((k.clone(), joined(o, table.get(&k)).unwrap()))
            .or_default() += 1;
    }
    assert_eq!(
        expected.keys().filter(|(_, v)| v.ends_with("|-")).count(),
        (0..ORDERS).filter(|i| i % ORDER_KEYS >= 50).count(),
        "orders of deleted or unknown customers meet no row"
    );

    let config = |w: &str| {
        Config::new(&group, &b)
            .with_state_dir(dir.join(w))
            .with_commit_max_records(200)
            .with_consumer_property("heartbeat.interval.ms", "500")
    };
    // Keep-alive zero: the reader must stop as soon as the last join task is gone.
    let customers = Table::topic(&table_topic, Serde::string(), Serde::json::<Customer>())
        .keep_alive(Duration::ZERO);
    let w1 = Runtime::new(config("w1"))
        .spawn(pipeline(&input, &output, customers.clone()))
        .unwrap();
    // Orders arrive in three thirds; a second worker takes partitions before the second
    // and leaves while the third is sent: two rebalances with records in flight.
    let third = ORDERS / 3;
    send_orders(&b, &input, 0..third);
    let w2 = Runtime::new(config("w2"))
        .spawn(pipeline(&input, &output, customers))
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    while w2.stats().partitions == 0 {
        assert!(
            Instant::now() < give_up,
            "the second worker got no partition"
        );
        assert!(!w2.is_finished(), "the second worker stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    send_orders(&b, &input, third..2 * third);
    let last = {
        let (b, input) = (b.clone(), input.clone());
        std::thread::spawn(move || send_orders(&b, &input, 2 * third..ORDERS))
    };
    w2.stop();
    while !w2.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let w2_stats = w2.stats();
    w2.join().unwrap();
    last.join().unwrap();
    let w1 = wait_committed_while_running(w1, &b, &group, &input);
    let w1_stats = w1.stats();
    w1.stop();
    w1.join().unwrap();
    eprintln!("w1: {w1_stats:?}\nw2: {w2_stats:?}");
    assert!(
        w2_stats.records_in > 0,
        "the second worker processed nothing: no rebalance was tested ({w2_stats:?})"
    );

    let got = read_output(&b, &output);
    assert!(!got.is_empty(), "no output at all");
    let lost: Vec<_> = expected
        .iter()
        .filter(|(r, n)| got.get(r).copied().unwrap_or(0) < **n)
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(r, n)| expected.get(r).copied().unwrap_or(0) < **n)
        .take(5)
        .collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "output differs from the expected join: missing e.g. {lost:?}, extra or duplicated e.g. {extra:?}"
    );
    assert_eq!(got, expected);
    assert_eq!(got.values().sum::<usize>(), ORDERS);

    // The reader thread stops once no task uses the table (keep-alive zero).
    let give_up = Instant::now() + Duration::from_secs(10);
    while live_tables().contains(&table_topic) {
        assert!(
            Instant::now() < give_up,
            "the table reader is still running after the workers stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let _ = delete_topic(&b, &[&table_topic, &input, &output]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_table_topic_stops_the_worker_naming_it() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "join-missing-in", 1);
    let output = new_topic(&b, "join-missing-out", 1);
    let table_topic = unique_name("join-no-such-table");
    let dir = std::env::temp_dir().join(unique_name("exactly-join-missing"));
    produce(&b, &input, [(None, Some("c1"), "o1")]).unwrap();
    let table = Table::topic(&table_topic, Serde::string(), Serde::json::<Customer>());
    let w = Runtime::new(Config::new(unique_name("join-missing"), &b).with_state_dir(&dir))
        .spawn(pipeline(&input, &output, table))
        .unwrap();
    match failure_of(w) {
        Error::MissingTopic { topic, .. } => assert_eq!(topic, table_topic),
        other => panic!("expected MissingTopic, got {other}"),
    }
    assert!(read_output(&b, &output).is_empty());
    let _ = delete_topic(&b, &[&input, &output]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_undecodable_table_record_stops_the_worker_naming_it_until_its_key_is_rewritten() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "join-bad-in", 1);
    let output = new_topic(&b, "join-bad-out", 1);
    let table_topic = unique_name("join-bad-table");
    create_topic_with(&b, &table_topic, 1, &[("cleanup.policy", "compact")]).unwrap();
    let dir = std::env::temp_dir().join(unique_name("exactly-join-bad"));
    let group = unique_name("join-bad");
    let (c0, c1) = (customer(0, "v1"), customer(1, "v1"));
    produce(
        &b,
        &table_topic,
        [
            (Some(0), Some("c0"), c0.as_str()),
            (Some(0), Some("c1"), "not json"),
        ],
    )
    .unwrap();
    produce(
        &b,
        &input,
        [(None, Some("c0"), "o1"), (None, Some("c1"), "o2")],
    )
    .unwrap();
    let table = Table::topic(&table_topic, Serde::string(), Serde::json::<Customer>());
    let config = Config::new(&group, &b).with_state_dir(&dir);
    let w = Runtime::new(config.clone())
        .spawn(pipeline(&input, &output, table.clone()))
        .unwrap();
    match failure_of(w) {
        Error::Decode {
            part,
            topic,
            partition,
            offset,
            ..
        } => assert_eq!(
            (part, topic, partition, offset),
            ("value", table_topic.clone(), 0, 1)
        ),
        other => panic!("expected a Decode error, got {other}"),
    }
    assert!(read_output(&b, &output).is_empty(), "nothing is joined");

    // The repair: a valid value for the key. The bad record is still in the log (the
    // active segment is not compacted), but it is replaced, so the next start succeeds and
    // the orders left uncommitted are joined against the repaired table.
    produce(&b, &table_topic, [(Some(0), Some("c1"), c1.as_str())]).unwrap();
    let w = Runtime::new(config)
        .spawn(pipeline(&input, &output, table))
        .unwrap();
    let w = wait_committed_while_running(w, &b, &group, &input);
    w.stop();
    w.join().unwrap();
    let got: Vec<_> = read_output(&b, &output).into_iter().collect();
    assert_eq!(
        got,
        [
            (("c0".into(), "o1|name-0|v1".into()), 1),
            (("c1".into(), "o2|name-1|v1".into()), 1),
        ]
    );
    let _ = delete_topic(&b, &[&input, &output, &table_topic]);
    let _ = std::fs::remove_dir_all(dir);
}
