//! Bad records get a policy per pipeline: `Fail` (the default: stop, see bad_input.rs),
//! `Skip`, or `DeadLetter(topic)`. Under the last two a bad record's cycle is aborted — what
//! the record produced before failing is never visible — and replayed with the record
//! skipped or written to the dead-letter topic in the cycle's transaction: read_committed
//! shows every good record's output once, and each bad record once in the dead-letter topic.

mod common;

use common::*;
use exactly::framework::{Collector, Context, Operator, Record};
use exactly::prelude::*;
use std::time::Duration;

const RECORDS: usize = 300;
/// Offsets whose value is not UTF-8 (a decode error).
const UNDECODABLE: [usize; 2] = [40, 41];
/// Offsets whose value an operator refuses (an operator error), after the record already
/// produced one output into the transaction.
const REFUSED: [usize; 1] = [170];

fn value(i: usize) -> Vec<u8> {
    if UNDECODABLE.contains(&i) {
        vec![0xff, 0xfe, i as u8]
    } else if REFUSED.contains(&i) {
        format!("refuse-{i}").into_bytes()
    } else {
        format!("v{i}").into_bytes()
    }
}

/// Emits `{v}-a`, then refuses values starting with "refuse", else emits `{v}-b`.
struct Refuser;

impl Operator<Vec<u8>, String> for Refuser {
    type OutKey = Vec<u8>;
    type OutValue = String;
    fn process(
        &mut self,
        r: Record<Vec<u8>, String>,
        _: &mut Context,
        out: &mut dyn Collector<Vec<u8>, String>,
    ) -> exactly::Result<()> {
        out.collect(r.clone().with_value(format!("{}-a", r.value)))?;
        if r.value.starts_with("refuse") {
            return Err(Error::Operator {
                operator: "refuser".into(),
                message: format!("refused {}", r.value),
            });
        }
        out.collect(r.clone().with_value(format!("{}-b", r.value)))
    }
}

/// Runs the pipeline under `policy` until the input is committed; returns the output
/// values read_committed, sorted.
fn run(policy: impl Fn(&str) -> BadRecords, dead_letters: Option<&str>) -> (Vec<String>, String) {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "bad-records-in", 1);
    let output = new_topic(&b, "bad-records-out", 1);
    let group = unique_name("bad-records");
    produce(
        &b,
        &input,
        (0..RECORDS).map(|i| (Some(0), None::<&str>, value(i))),
    )
    .unwrap();
    let pipeline = Pipeline::from_topic(&input, Serde::string())
        .apply("refuser", || Refuser)
        .to_topic(&output, Serde::bytes(), Serde::string())
        .on_bad_records(policy(dead_letters.unwrap_or_default()));
    // Cycles of 25 records: each bad record aborts a cycle with good records in it.
    let config = Config::new(&group, &b).with_commit_max_records(25);
    let w = Runtime::new(config).spawn(pipeline).unwrap();
    common::copy_check::wait_until_committed_by(&b, &group, &input, Duration::from_secs(60), &[&w]);
    w.stop();
    w.join().expect("the worker goes on past bad records");
    let mut got: Vec<String> = read_to_end(&b, &output, Isolation::ReadCommitted, READ_DEADLINE)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
        .collect();
    got.sort();
    delete_topic(&b, &[&input, &output]).unwrap();
    (got, input)
}

fn expected_output() -> Vec<String> {
    let mut want: Vec<String> = (0..RECORDS)
        .filter(|i| !UNDECODABLE.contains(i) && !REFUSED.contains(i))
        .flat_map(|i| [format!("v{i}-a"), format!("v{i}-b")])
        .collect();
    want.sort();
    want
}

#[test]
fn skipped_bad_records_leave_no_trace_and_every_good_record_is_exact() {
    let (got, _) = run(|_| BadRecords::Skip, None);
    assert!(
        !got.iter().any(|v| v.starts_with("refuse")),
        "output of a skipped record is visible: {:?}",
        got.iter()
            .filter(|v| v.starts_with("refuse"))
            .collect::<Vec<_>>()
    );
    assert_eq!(got.len(), expected_output().len(), "output records");
    assert!(
        got == expected_output(),
        "the output differs from the good records' outputs"
    );
}

#[test]
fn dead_lettered_bad_records_are_written_once_with_their_coordinates() {
    let b = brokers();
    let dlq = new_topic(&b, "bad-records-dlq", 1);
    let (got, input) = run(|t| BadRecords::DeadLetter(t.to_string()), Some(&dlq));
    assert!(
        got == expected_output(),
        "the output differs from the good records' outputs"
    );

    let letters = read_to_end(&b, &dlq, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    let mut bad: Vec<usize> = UNDECODABLE.iter().chain(&REFUSED).copied().collect();
    bad.sort();
    assert_eq!(letters.len(), bad.len(), "dead letters: {letters:?}");
    for (letter, offset) in letters.iter().zip(&bad) {
        assert_eq!(
            letter.value.as_deref(),
            Some(value(*offset).as_slice()),
            "raw value"
        );
        let header = |k: &str| {
            letter
                .headers
                .iter()
                .find(|(hk, _)| hk == k)
                .and_then(|(_, v)| v.clone())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            header("exactly.error.topic").as_deref(),
            Some(input.as_str())
        );
        assert_eq!(header("exactly.error.partition").as_deref(), Some("0"));
        assert_eq!(
            header("exactly.error.offset"),
            Some(offset.to_string()),
            "{letter:?}"
        );
        let message = header("exactly.error.message").unwrap();
        let cause = if REFUSED.contains(offset) {
            "refused refuse-"
        } else {
            "not UTF-8"
        };
        assert!(message.contains(cause), "{message}");
    }
    delete_topic(&b, &[&dlq]).unwrap();
}
