//! A panic in user code never commits: the open transaction is aborted before anything else
//! runs, the worker stops with an error that names the operator, the task and the offset,
//! and a restart resumes exactly.

mod common;

use common::*;
use exactly::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const RECORDS: usize = 2001;
const BOOM_AT: usize = 1000;

/// `flat_map(v -> [v-a, v-b]) -> map(panics once on "boom-b") -> to_topic`: the panic
/// comes after the record's first output was produced into the open transaction.
fn pipeline(input: &str, output: &str, armed: Arc<AtomicBool>) -> Pipeline {
    Pipeline::from_topic(input, Serde::string())
        .flat_map(|v: String| [format!("{v}-a"), format!("{v}-b")])
        .map(move |v: String| {
            if v == "boom-b" && armed.swap(false, Ordering::SeqCst) {
                panic!("injected panic on {v}");
            }
            v
        })
        .to_topic(output, Serde::bytes(), Serde::string())
}

/// Writes `RECORDS` values to `input`, `boom` at `BOOM_AT`; returns them.
fn load_input(brokers: &str, input: &str) -> Vec<String> {
    let values: Vec<String> = (0..RECORDS)
        .map(|i| {
            if i == BOOM_AT {
                "boom".to_string()
            } else {
                format!("v{i}")
            }
        })
        .collect();
    produce(
        brokers,
        input,
        values.iter().map(|v| (Some(0), None::<&str>, v.clone())),
    )
    .unwrap();
    values
}

/// The expected output of `values` and what `output` holds under read_committed, sorted.
fn expected_and_read(brokers: &str, output: &str, values: &[String]) -> (Vec<String>, Vec<String>) {
    let mut want: Vec<String> = values
        .iter()
        .flat_map(|v| [format!("{v}-a"), format!("{v}-b")])
        .collect();
    let mut got: Vec<String> =
        read_to_end(brokers, output, Isolation::ReadCommitted, READ_DEADLINE)
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
            .collect();
    want.sort();
    got.sort();
    (want, got)
}

#[test]
fn a_panic_in_an_operator_commits_nothing_and_a_restart_resumes_exactly() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "panic-in", 1);
    let output = new_topic(&b, "panic-out", 1);
    let group = unique_name("panic");
    let values = load_input(&b, &input);
    let config = || Config::new(&group, &b).with_session_timeout(Duration::from_secs(6));

    // First run: the panic stops the worker with an error naming where it happened.
    let armed = Arc::new(AtomicBool::new(true));
    let err = Runtime::new(config())
        .spawn(pipeline(&input, &output, armed.clone()))
        .unwrap()
        .join()
        .expect_err("a panicking operator must stop the worker with an error");
    // Checked after the output: what matters first is that nothing was committed twice.
    assert!(!armed.load(Ordering::SeqCst), "the panic was not reached");
    let first_committed = committed_offsets(&b, &group, &input).unwrap();
    // Second run (no panic this time): resumes from the committed offset.
    let w = Runtime::new(config())
        .spawn(pipeline(&input, &output, armed))
        .unwrap();
    common::copy_check::wait_until_committed_by(&b, &group, &input, Duration::from_secs(60), &[&w]);
    w.stop();
    w.join().unwrap();

    let (want, got) = expected_and_read(&b, &output, &values);
    let dupes: Vec<&String> = got
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(
        dupes.is_empty(),
        "duplicated under read_committed: {dupes:?}"
    );
    assert_eq!(got.len(), want.len(), "output records");
    assert!(got == want, "the output differs from the expected multiset");

    let msg = err.to_string();
    eprintln!("the worker stopped with: {msg}");
    for part in [
        "`map-1`",
        &format!("{input}/0@{BOOM_AT}"),
        "injected panic on boom-b",
    ] {
        assert!(msg.contains(part), "the error must name {part}: {msg}");
    }
    // Nothing past the panicking record was committed by the first run.
    let committed = first_committed;
    assert!(
        matches!(committed.as_slice(), [(0, c)] if c.unwrap_or(0) <= BOOM_AT as i64),
        "committed past the panicking record: {committed:?}"
    );

    delete_topic(&b, &[&input, &output]).unwrap();
}

#[test]
fn with_on_panic_restart_the_worker_restarts_in_place_and_the_output_is_exact() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "panic-restart-in", 1);
    let output = new_topic(&b, "panic-restart-out", 1);
    let group = unique_name("panic-restart");
    let values = load_input(&b, &input);
    let config = Config::new(&group, &b)
        .with_session_timeout(Duration::from_secs(6))
        .with_on_panic(OnPanic::Restart {
            max: 3,
            backoff: Duration::from_millis(100),
        });
    let armed = Arc::new(AtomicBool::new(true));
    let w = Runtime::new(config)
        .spawn(pipeline(&input, &output, armed.clone()))
        .unwrap();
    common::copy_check::wait_until_committed_by(&b, &group, &input, Duration::from_secs(60), &[&w]);
    assert!(!armed.load(Ordering::SeqCst), "the panic was not reached");
    let stats = w.stats();
    w.stop();
    w.join()
        .expect("the worker restarts after the panic instead of stopping");
    assert_eq!(stats.recoveries, 1, "{stats:?}");

    let (want, got) = expected_and_read(&b, &output, &values);
    assert_eq!(got.len(), want.len(), "output records");
    assert!(got == want, "the output differs from the expected multiset");
    delete_topic(&b, &[&input, &output]).unwrap();
}
