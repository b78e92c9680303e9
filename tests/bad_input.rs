//! Bad input gets a clear error and loses nothing: an undecodable record, a missing topic,
//! an unreachable broker and a wrong config value each stop the worker with a message that
//! names the problem, and the committed state stays consistent.

mod common;

use common::*;
use exactly::prelude::*;
use exactly::Error;
use std::time::Duration;

#[test]
fn an_undecodable_record_stops_the_worker_and_commits_nothing_past_it() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "bad-record-in", 1);
    let output = new_topic(&b, "bad-record-out", 1);
    let group = unique_name("bad-record");
    let mut values: Vec<Vec<u8>> = (0..100).map(|i| format!("ok-{i}").into_bytes()).collect();
    values.push(vec![0xff, 0xfe, 0x00]); // offset 100: not UTF-8
    values.extend((101..120).map(|i| format!("ok-{i}").into_bytes()));
    produce(
        &b,
        &input,
        values.iter().map(|v| (Some(0), None::<&str>, v.clone())),
    )
    .unwrap();

    let pipeline = Pipeline::from_topic(&input, Serde::string())
        .map(|s: String| s.to_uppercase())
        .to_topic(&output, Serde::bytes(), Serde::string());
    // One record per transaction, so the records before the bad one are committed.
    let config = Config::new(&group, &b).with_commit_max_records(1);
    let err = Runtime::new(config)
        .spawn(pipeline)
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot decode the value of record {input}/0@100: not UTF-8 (invalid utf-8 sequence of 1 bytes from index 0)")
    );
    // Nothing past the bad record is committed, nothing before it is lost.
    assert_eq!(
        committed_offsets(&b, &group, &input).unwrap(),
        vec![(0, Some(100))]
    );
    let out = read_to_end(&b, &output, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    let got: Vec<String> = out
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(got, (0..100).map(|i| format!("OK-{i}")).collect::<Vec<_>>());
    delete_topic(&b, &[&input, &output]).unwrap();
}

#[test]
fn a_missing_topic_is_named() {
    let b = brokers();
    let output = new_topic(&b, "missing-out", 1);
    let input = unique_name("no-such-topic");
    let err = Runtime::new(Config::new(unique_name("missing"), &b))
        .spawn(Pipeline::copy(&input, &output))
        .unwrap()
        .join()
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingTopic { topic, .. } if *topic == input),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("topic `{input}` does not exist on {b}")),
        "{err}"
    );
    delete_topic(&b, &[&output]).unwrap();
}

#[test]
fn a_missing_table_topic_is_named_at_start_even_without_input() {
    let b = brokers();
    let input = new_topic(&b, "missing-table-in", 1);
    let output = new_topic(&b, "missing-table-out", 1);
    let table = unique_name("no-such-table");
    // An empty input: no task ever starts, so only the start-up check can notice.
    let pipeline = Pipeline::from_topic(&input, Serde::string())
        .join_table(
            "join",
            Table::topic(&table, Serde::bytes(), Serde::string()),
            |v: String, t: Option<&String>| Some(format!("{v},{t:?}")),
        )
        .to_topic(&output, Serde::bytes(), Serde::string());
    let worker = Runtime::new(Config::new(unique_name("missing-table"), &b))
        .spawn(pipeline)
        .unwrap();
    let err = stops_with_error(worker, Duration::from_secs(60));
    assert!(
        matches!(&err, Error::MissingTopic { topic, .. } if *topic == table),
        "{err:?}"
    );
    delete_topic(&b, &[&input, &output]).unwrap();
}

#[test]
fn records_older_than_the_outputs_retention_are_counted_and_warned_about() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "old-records-in", 1);
    let output = unique_name("old-records-out");
    // The broker deletes this topic's records an hour after their timestamp.
    exactly_testkit::create_topic_with(&b, &output, 1, &[("retention.ms", "3600000")]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let two_days = 2 * 86_400_000;
    // 30 records from two days ago, then 20 from now.
    let records = (0..50).map(|i| {
        let ts = if i < 30 { now - two_days } else { now };
        (Some(0), None::<&str>, format!("r{i}"), Some(ts))
    });
    exactly_testkit::Loader::new(&b)
        .unwrap()
        .send_at(&input, records)
        .unwrap();
    let group = unique_name("old-records");
    let w = Runtime::new(Config::new(&group, &b))
        .spawn(Pipeline::from_topic(&input, Serde::string()).to_topic(
            &output,
            Serde::bytes(),
            Serde::string(),
        ))
        .unwrap();
    common::copy_check::wait_until_committed_by(&b, &group, &input, Duration::from_secs(60), &[&w]);
    let stats = w.stats();
    w.stop();
    w.join().unwrap();
    assert_eq!(stats.records_past_retention, 30, "{stats:?}");
    delete_topic(&b, &[&input, &output]).unwrap();
}

#[test]
fn an_unreachable_broker_is_reported() {
    // Port 1 on loopback: nothing listens there.
    let config = Config::new("unreachable", "127.0.0.1:1")
        .with_startup_timeout(Duration::from_millis(1_500));
    let err = Runtime::new(config)
        .spawn(Pipeline::copy("in", "out"))
        .unwrap()
        .join()
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("a worker waits startup_timeout_ms (1500 ms) at its first start"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot reach Kafka at 127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn a_wrong_config_value_is_rejected_before_anything_starts() {
    let err = Runtime::new(
        Config::new("app", "127.0.0.1:1").with_transaction_timeout(Duration::from_millis(5)),
    )
    .spawn(Pipeline::copy("in", "out"))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration `transaction_timeout_ms`: 5 is outside the allowed range 1000..=900000"
    );
    let err =
        Runtime::new(Config::new("app", "127.0.0.1:1").with_kafka_property("linger.ms", "soon"))
            .spawn(Pipeline::copy("in", "out"))
            .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid configuration `linger.ms`"),
        "{err}"
    );
}

#[test]
fn properties_the_runtime_owns_are_refused_on_every_path() {
    let base = || Config::new("app", "127.0.0.1:1");
    let cases = [
        (
            base().with_consumer_property("group.id", "other"),
            "group.id",
            "application_id",
        ),
        (
            base().with_consumer_property("isolation.level", "read_uncommitted"),
            "isolation.level",
            "guarantee",
        ),
        (
            base().with_producer_property("transactional.id", "mine"),
            "transactional.id",
            "application_id",
        ),
        (
            base().with_producer_property("enable.idempotence", "false"),
            "enable.idempotence",
            "guarantee",
        ),
        (
            base().with_consumer_property("enable.auto.commit", "true"),
            "enable.auto.commit",
            "guarantee",
        ),
    ];
    for (config, key, setting) in cases {
        let err = Runtime::new(config)
            .spawn(Pipeline::copy("in", "out"))
            .expect_err(key)
            .to_string();
        assert_eq!(
            err,
            format!("invalid configuration `{key}`: is set by exactly; use the `{setting}` setting instead")
        );
    }
    // The runtime bounds message.timeout.ms by the transaction timeout under ExactlyOnce.
    let err = Runtime::new(base().with_producer_property("message.timeout.ms", "600000"))
        .spawn(Pipeline::copy("in", "out"))
        .expect_err("message.timeout.ms above transaction_timeout_ms")
        .to_string();
    assert!(
        err.starts_with("invalid configuration `message.timeout.ms`")
            && err.contains("transaction_timeout_ms"),
        "{err}"
    );
    // A misspelled consumer or producer property fails at spawn(), naming it.
    for config in [
        base().with_consumer_property("fetch.max.bytez", "1"),
        base().with_producer_property("lingerr.ms", "1"),
    ] {
        let err = Runtime::new(config)
            .spawn(Pipeline::copy("in", "out"))
            .expect_err("a misspelled property")
            .to_string();
        assert!(
            err.contains("fetch.max.bytez") || err.contains("lingerr.ms"),
            "{err}"
        );
    }
}

#[test]
fn input_deleted_before_it_was_processed_stops_the_worker() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "truncated-in", 1);
    let output = new_topic(&b, "truncated-out", 1);
    let group = unique_name("truncated");
    let batch = |from: usize| (from..from + 100).map(|i| (Some(0), None::<&str>, format!("r{i}")));
    produce(&b, &input, batch(0)).unwrap();
    let w = Runtime::new(Config::new(&group, &b))
        .spawn(Pipeline::copy(&input, &output))
        .unwrap();
    common::copy_check::wait_until_committed_by(&b, &group, &input, Duration::from_secs(60), &[&w]);
    w.stop();
    w.join().unwrap();
    // While the application is away, records it never processed are deleted (retention,
    // DeleteRecords): its committed offset 100 is now below the log start 150.
    produce(&b, &input, batch(100)).unwrap();
    delete_records(&b, &input, &[(0, 150)]).unwrap();
    let w = Runtime::new(Config::new(&group, &b))
        .spawn(Pipeline::copy(&input, &output))
        .unwrap();
    let err = stops_with_error(w, Duration::from_secs(30)).to_string();
    assert!(
        err.contains(&format!("{input}/0"))
            && err.contains("committed offset 100")
            && err.contains("log start 150"),
        "{err}"
    );
    assert_eq!(
        committed_offsets(&b, &group, &input).unwrap(),
        vec![(0, Some(100))]
    );
    delete_topic(&b, &[&input, &output]).unwrap();
}

#[test]
fn an_internal_replication_factor_the_cluster_cannot_meet_is_named() {
    let b = brokers();
    let input = new_topic(&b, "rf-in", 1);
    let output = new_topic(&b, "rf-out", 1);
    let group = unique_name("rf");
    let pipeline = Pipeline::from_topic(&input, Serde::string())
        .key_by(
            "hop",
            |v: &String| v.clone(),
            Serde::string(),
            Serde::string(),
        )
        .to_topic(&output, Serde::string(), Serde::string());
    let w = Runtime::new(Config::new(&group, &b).with_internal_replication_factor(100))
        .spawn(pipeline)
        .unwrap();
    let err = stops_with_error(w, Duration::from_secs(30)).to_string();
    assert!(
        err.contains("internal_replication_factor")
            && err.contains(&format!("{group}-hop-repartition")),
        "{err}"
    );
    delete_topic(&b, &[&input, &output]).unwrap();
}
