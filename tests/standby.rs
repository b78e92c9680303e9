//! Warm standbys (`Config::with_standby_replicas`) against a real broker: two members of a
//! keyed word count (one stage, so that every partition has state and each member holds
//! some) each keep a standby copy of the other's partitions; when one leaves, the
//! survivor takes its partitions over replaying fewer than 1 % of the changelog's records —
//! where the same run without standbys replays the moved partitions' whole changelog — and
//! the counts stay exact.

mod common;

use common::copy_check::wait_until_committed;
use common::corpus::Corpus;
use common::*;
use exactly::prelude::*;
use std::time::{Duration, Instant};

/// The corpus's words as records keyed by the word.
fn send_words(run: &Corpus, lines: &[&str]) {
    let words: Vec<String> = lines
        .iter()
        .flat_map(|l| exactly::operators::text::words(l))
        .collect();
    produce(
        &run.b,
        &run.input,
        words.iter().map(|w| (None, Some(w.as_str()), "1")),
    )
    .unwrap();
}

/// Counts the records of each key: every partition of the one stage keeps state.
fn keyed_count(input: &str, output: &str) -> Pipeline {
    Pipeline::from_topic_with_key(input, Serde::string(), Serde::string())
        .count("count")
        .map(|n: u64| n.to_string())
        .to_topic(output, Serde::string(), Serde::string())
}

fn wait_done(run: &Corpus) {
    wait_until_committed(&run.b, &run.group, &run.input, Duration::from_secs(180));
}

/// Two members count, one leaves, more input arrives so that every moved partition opens
/// its state on the survivor; returns (changelog records before the handover, records the
/// survivor replayed to take the partitions over, how long opening them took).
fn take_over(name: &str, standby_replicas: u32) -> (i64, u64, Duration) {
    let run = Corpus::new(name, 6_000);
    let (first, second) = run.lines.split_at(5_000);
    send_words(&run, first);
    let dir = std::env::temp_dir().join(unique_name("exactly-standby"));
    let config = |w: &str| {
        Config::new(&run.group, &run.b)
            .with_state_dir(dir.join(w))
            .with_standby_replicas(standby_replicas)
            .with_consumer_property("heartbeat.interval.ms", "100")
    };
    let survivor = Runtime::new(config("survivor"))
        .spawn(keyed_count(&run.input, &run.output))
        .unwrap();
    let leaver = Runtime::new(config("leaver"))
        .spawn(keyed_count(&run.input, &run.output))
        .unwrap();
    // Both own partitions before the input is done: wait for the two to share the work.
    let deadline = Instant::now() + Duration::from_secs(60);
    while survivor.stats().partitions == 0 || leaver.stats().partitions == 0 {
        assert!(
            Instant::now() < deadline,
            "the two members never shared the partitions"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_done(&run);
    if standby_replicas > 0 {
        // The survivor's copies have caught up with the changelog.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = survivor.stats();
            if s.standby_partitions > 0 && s.standby_lag == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the survivor's standby never caught up: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let changelog: i64 = watermarks(&run.b, &run.changelog())
        .unwrap()
        .iter()
        .map(|(_, _, high)| high)
        .sum();
    let before = survivor.stats();
    leaver.stop();
    leaver.join().unwrap();
    // New input on every partition: the survivor opens every moved state.
    send_words(&run, second);
    wait_done(&run);
    let after = survivor.stats();
    survivor.stop();
    survivor.join().unwrap();
    run.assert_exact();
    run.cleanup();
    let _ = std::fs::remove_dir_all(dir);
    (
        changelog,
        after.restored_records - before.restored_records,
        after.restore_time - before.restore_time,
    )
}

#[test]
fn a_survivor_with_standbys_takes_over_replaying_under_one_percent() {
    init_tracing();
    let (changelog, replayed, took) = take_over("standby-on", 1);
    let (changelog_cold, replayed_cold, took_cold) = take_over("standby-off", 0);
    eprintln!(
        "with standbys: {replayed} of {changelog} changelog records replayed in {took:?}; \
         without: {replayed_cold} of {changelog_cold} in {took_cold:?}"
    );
    assert!(
        changelog > 1_000,
        "too small a changelog to tell: {changelog}"
    );
    assert!(
        (replayed as f64) < 0.01 * changelog as f64,
        "with standbys the survivor replayed {replayed} of {changelog} changelog records"
    );
    // Without standbys the moved partitions' changelog is replayed: the measure can fail.
    assert!(
        (replayed_cold as f64) > 0.1 * changelog_cold as f64,
        "without standbys the survivor replayed only {replayed_cold} of {changelog_cold}"
    );
}
