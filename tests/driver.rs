//! The whole-pipeline test driver (`testing::TestDriver`): pipelines in memory — hops,
//! state, windows, timers, tees, bad records — and the same pipeline on the broker and in
//! the driver giving the same output.

mod common;

use common::*;
use exactly::framework::testing::TestDriver;
use exactly::operators::text::words;
use exactly::operators::{Windowed, Windows};
use exactly::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// Words counted per word behind a repartition (every update emitted), and in a branch the
/// long words, to two topics.
fn counted(input: &str, counts: &str, long: &str) -> Pipeline {
    let long = long.to_string();
    Pipeline::from_topic(input, Serde::string())
        .flat_map(|line: String| words(&line))
        .tee(move |w| {
            w.filter(|w: &String| w.len() > 6)
                .to_topic(long, Serde::bytes(), Serde::string())
        })
        .key_by(
            "words",
            |w: &String| w.clone(),
            Serde::string(),
            Serde::string(),
        )
        .count("counts")
        .emit_every_update()
        .map(|n: u64| n.to_string())
        .to_topic(counts, Serde::string(), Serde::string())
}

fn lines() -> Vec<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/kjv.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(400)
        .map(str::to_string)
        .collect()
}

fn multiset(
    pairs: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for p in pairs {
        *m.entry(p).or_default() += 1;
    }
    m
}

#[test]
fn a_word_count_with_a_repartition_and_a_tee_runs_in_memory() {
    let mut d = TestDriver::new(counted("lines", "counts", "long")).with_default_partitions(4);
    let lines = lines();
    for (i, l) in lines.iter().enumerate() {
        d.pipe("lines", None, Some(l.as_bytes()), 1_000 + i as i64)
            .unwrap();
    }
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let mut long = 0;
    for l in &lines {
        for w in words(l) {
            long += usize::from(w.len() > 6);
            *want.entry(w).or_default() += 1;
        }
    }
    let out = d
        .read("counts", &Serde::string(), &Serde::string())
        .unwrap();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in &out {
        let n: u64 = v.parse().unwrap();
        let prev = last.insert(k.clone().unwrap(), n).unwrap_or(0);
        assert_eq!(n, prev + 1, "every update, in order, for {k:?}");
    }
    assert_eq!(last, want);
    assert_eq!(d.records("long").len(), long);
    assert!(long > 0);
    // The hop went through four partitions of the internal topic, by key.
    let hop = d.records("test-words-repartition");
    assert_eq!(hop.len(), want.values().sum::<u64>() as usize);
    assert_eq!(hop.iter().map(|r| r.partition).max(), Some(3));
}

#[test]
fn windows_with_payload_times_close_on_an_advanced_wall_clock() {
    let pipeline = Pipeline::from_topic_with_key("clicks", Serde::string(), Serde::string())
        .with_timestamp(|r: &Record<String, String>| r.value.parse().ok())
        .session_count(
            "sessions",
            Windows::session(Duration::from_secs(10)).close_when_idle(Duration::from_secs(1)),
        )
        .map_key(|r: &Record<Windowed<String>, u64>| {
            r.key
                .as_ref()
                .map(|w| format!("{}@{}", w.key.clone().unwrap_or_default(), w.start))
        })
        .map(|n: u64| n.to_string())
        .to_topic("sessions", Serde::string(), Serde::string());
    let mut d = TestDriver::new(pipeline);
    for (user, t) in [
        ("a", 100_000),
        ("b", 101_000),
        ("a", 105_000),
        ("a", 130_000),
    ] {
        d.pipe(
            "clicks",
            Some(user.as_bytes()),
            Some(t.to_string().as_bytes()),
            1,
        )
        .unwrap();
    }
    let read = |d: &TestDriver| {
        d.read("sessions", &Serde::string(), &Serde::string())
            .unwrap()
    };
    // a@100000 (2 clicks) and b@101000 closed when a's click at 130 000 came.
    assert_eq!(
        read(&d),
        vec![
            (Some("a@100000".into()), "2".into()),
            (Some("b@101000".into()), "1".into())
        ]
    );
    // Idle: every second of wall clock moves stream time on by a second; a@130000 closes
    // once stream time passes 140 000, about ten ticks later.
    for _ in 0..8 {
        d.advance_wall_clock(Duration::from_secs(1)).unwrap();
    }
    assert_eq!(read(&d).len(), 2, "not yet");
    for _ in 0..5 {
        d.advance_wall_clock(Duration::from_secs(1)).unwrap();
    }
    assert_eq!(read(&d)[2], (Some("a@130000".into()), "1".into()));
}

#[test]
fn bad_records_follow_the_pipeline_policy_in_memory() {
    let pipeline = || {
        Pipeline::from_topic("in", Serde::string())
            .map(|s: String| s.to_uppercase())
            .to_topic("out", Serde::bytes(), Serde::string())
    };
    let mut d = TestDriver::new(pipeline().on_bad_records(BadRecords::DeadLetter("dlq".into())));
    d.pipe("in", None, Some(b"a"), 1).unwrap();
    d.pipe("in", None, Some(&[0xff, 0xfe]), 2).unwrap();
    d.pipe("in", None, Some(b"b"), 3).unwrap();
    assert_eq!(
        d.read("out", &Serde::bytes(), &Serde::string())
            .unwrap()
            .len(),
        2
    );
    let dlq = d.records("dlq");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value.as_deref(), Some(&[0xff, 0xfe][..]));
    assert!(dlq[0]
        .headers
        .iter()
        .any(|h| h.key == "exactly.error.offset" && h.value.as_deref() == Some(&b"1"[..])));
    let mut failing = TestDriver::new(pipeline());
    let e = failing.pipe("in", None, Some(&[0xff]), 1).unwrap_err();
    assert!(e.to_string().contains("in/0@0"), "{e}");
    let e = failing.pipe("nowhere", None, Some(b"x"), 1).unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
}

#[test]
fn the_same_pipeline_on_the_broker_and_in_the_driver_writes_the_same_records() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "driver-lines", 4);
    let counts = new_topic(&b, "driver-counts", 4);
    let long = new_topic(&b, "driver-long", 4);
    let group = unique_name("driver");
    let lines = lines();
    // Each line to partition i % 4, in the driver as on the broker.
    produce(
        &b,
        &input,
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (Some(i as i32 % 4), None::<&str>, l.as_str())),
    )
    .unwrap();
    let config = Config::new(&group, &b).with_commit_max_records(50);
    let w = Runtime::new(config)
        .spawn(counted(&input, &counts, &long))
        .unwrap();
    let hop = format!("{group}-words-repartition");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !(testkit_caught_up(&b, &group, &input) && testkit_caught_up(&b, &group, &hop)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not catch up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    w.stop();
    w.join().unwrap();

    let mut d = TestDriver::new(counted(&input, &counts, &long)).with_default_partitions(4);
    for (i, l) in lines.iter().enumerate() {
        d.pipe_to(&input, Some(i as i32 % 4), None, Some(l.as_bytes()), 1)
            .unwrap();
    }
    let broker = |topic: &str| {
        multiset(
            read_to_end(&b, topic, Isolation::ReadCommitted, READ_DEADLINE)
                .unwrap()
                .into_iter()
                .map(|r| {
                    let s = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap_or_default()).unwrap();
                    (s(r.key), s(r.value))
                }),
        )
    };
    let driver = |topic: &str| {
        multiset(d.records(topic).into_iter().map(|r| {
            let s = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap_or_default()).unwrap();
            (s(r.key), s(r.value))
        }))
    };
    let (got, want) = (broker(&counts), driver(&counts));
    assert!(!want.is_empty());
    assert_eq!(
        got, want,
        "counts: the broker's read_committed output and the driver's"
    );
    assert_eq!(broker(&long), driver(&long), "the tee's branch");
    let changelog = exactly::framework::state::changelog::topic_name(&group, "counts", "counts");
    let _ = delete_topic(&b, &[&input, &counts, &long, &hop, &changelog]);
}

fn testkit_caught_up(b: &str, group: &str, topic: &str) -> bool {
    exactly_testkit::caught_up(b, group, topic).unwrap_or(false)
}
