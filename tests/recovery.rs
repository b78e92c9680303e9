//! Self-healing: a worker whose transaction was aborted under it, or whose producer was
//! fenced, does not exit. It drops the open cycle, creates a new transactional producer and
//! consumer, rejoins the group, restores what it needs and goes on — and the output stays
//! exact.

mod common;

use common::*;
use exactly::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const RECORDS: usize = 400;
/// Mid-cycle (cycles of 10 records): records 150..155 are in the open transaction, so the
/// coordinator knows it and times it out.
const SLOW_AT: usize = 155;

/// A copy whose map stalls once, on record `SLOW_AT`, for longer than the transaction
/// timeout: the coordinator aborts the open transaction and bumps the producer's epoch.
fn slow_once(input: &str, output: &str, armed: Arc<AtomicBool>, stall: Duration) -> Pipeline {
    Pipeline::from_topic(input, Serde::string())
        .map(move |v: String| {
            if v == format!("v{SLOW_AT}") && armed.swap(false, Ordering::SeqCst) {
                std::thread::sleep(stall);
            }
            v
        })
        .to_topic(output, Serde::bytes(), Serde::string())
}

#[test]
fn a_slow_operator_past_the_transaction_timeout_recovers_and_the_output_is_exact() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "recover-slow-in", 1);
    let output = new_topic(&b, "recover-slow-out", 1);
    let group = unique_name("recover-slow");
    let values: Vec<String> = (0..RECORDS).map(|i| format!("v{i}")).collect();
    produce(
        &b,
        &input,
        values.iter().map(|v| (Some(0), None::<&str>, v.clone())),
    )
    .unwrap();
    let timeout = Duration::from_millis(2_000);
    let config = Config::new(&group, &b)
        .with_transaction_timeout(timeout)
        .with_session_timeout(Duration::from_secs(6))
        .with_commit_max_records(10);
    let armed = Arc::new(AtomicBool::new(true));
    let w = Runtime::new(config)
        .spawn(slow_once(&input, &output, armed.clone(), timeout * 3))
        .unwrap();
    common::copy_check::wait_until_committed_by(&b, &group, &input, Duration::from_secs(90), &[&w]);
    assert!(!armed.load(Ordering::SeqCst), "the stall was not reached");
    let stats = w.stats();
    w.stop();
    w.join().expect("the worker must recover, not stop");

    let mut got: Vec<String> = read_to_end(&b, &output, Isolation::ReadCommitted, READ_DEADLINE)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
        .collect();
    let mut want = values.clone();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "output records under read_committed");
    assert!(got == want, "the output differs from the input multiset");
    // The stalled cycle was not committed: it was aborted and replayed, or (when librdkafka
    // found its producer fenced) the worker recovered in place.
    assert!(
        stats.aborts + stats.recoveries >= 1,
        "the timed-out transaction was neither aborted nor recovered from: {stats:?}"
    );
    eprintln!("{stats:?}");
    delete_topic(&b, &[&input, &output]).unwrap();
}
