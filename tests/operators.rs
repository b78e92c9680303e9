//! Every operator of `exactly-operators` on the real broker, through a forced rebalance (a
//! second worker joins, then leaves, while the input arrives in three parts: before, during
//! and after). Each test compares the complete read_committed output, and side topic, with
//! what it must be: computed directly, or for the time-based operators by running the
//! operator on the test harness over each partition's records in order (a task sees exactly
//! that, so the outputs must be equal as multisets).

mod common;

use common::copy_check::wait_until_committed_by;
use common::*;
use exactly::framework::testing::Harness;
use exactly::framework::{Operator, Record};
use exactly::operators::{Dedup, WindowAggregate, Windowed, Windows};
use exactly::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PARTITIONS: i32 = 4;

/// One record to send: partition, key, value, timestamp.
type Input = (i32, String, String, i64);

/// Topics, group and state directory of one test.
struct Case {
    b: String,
    input: String,
    output: String,
    side: String,
    group: String,
    dir: std::path::PathBuf,
}

impl Case {
    fn new(name: &str) -> Case {
        init_tracing();
        let b = brokers();
        Case {
            input: new_topic(&b, &format!("{name}-in"), PARTITIONS),
            output: new_topic(&b, &format!("{name}-out"), PARTITIONS),
            side: new_topic(&b, &format!("{name}-side"), PARTITIONS),
            group: unique_name(name),
            dir: std::env::temp_dir().join(unique_name(&format!("exactly-ops-{name}"))),
            b,
        }
    }

    /// Runs `pipeline` on one worker while a second joins and leaves; the input goes in
    /// three parts around those two rebalances. Returns when everything is committed.
    fn run(&self, pipeline: impl Fn() -> Pipeline, input: &[Input]) {
        self.run_until(pipeline, input, || true)
    }

    /// As [`run`](Self::run), and then keeps the first worker running until `done()` holds
    /// (for output that wall-clock timers write after the input is processed).
    fn run_until(&self, pipeline: impl Fn() -> Pipeline, input: &[Input], done: impl Fn() -> bool) {
        let config = |w: &str| {
            Config::new(&self.group, &self.b)
                .with_state_dir(self.dir.join(w))
                .with_commit_max_records(300)
        };
        let send = |part: &[Input]| {
            Loader::new(&self.b)
                .unwrap()
                .send_at(
                    &self.input,
                    part.iter()
                        .map(|(p, k, v, ts)| (Some(*p), Some(k.as_str()), v.as_str(), Some(*ts))),
                )
                .unwrap();
        };
        let third = input.len() / 3;
        send(&input[..third]);
        let w1 = Runtime::new(config("w1")).spawn(pipeline()).unwrap();
        std::thread::sleep(Duration::from_millis(1_000));
        let w2 = Runtime::new(config("w2")).spawn(pipeline()).unwrap();
        send(&input[third..2 * third]);
        std::thread::sleep(Duration::from_millis(2_000));
        w2.stop();
        w2.join().expect("the second worker");
        send(&input[2 * third..]);
        wait_until_committed_by(
            &self.b,
            &self.group,
            &self.input,
            Duration::from_secs(120),
            &[&w1],
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "the output was not complete within 60 s after the input was committed"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        w1.stop();
        let processed = w1.stats().records_in;
        w1.join().expect("the first worker");
        assert!(processed > 0, "the first worker processed nothing");
    }

    /// The (key, value) multiset of `topic`, read_committed.
    fn read(&self, topic: &str) -> BTreeMap<(String, String), usize> {
        let mut m = BTreeMap::new();
        for r in read_to_end(&self.b, topic, Isolation::ReadCommitted, READ_DEADLINE).unwrap() {
            let s = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap_or_default()).unwrap();
            *m.entry((s(r.key), s(r.value))).or_default() += 1;
        }
        m
    }

    fn cleanup(&self, operators_with_state: &[(&str, &[&str])]) {
        let mut topics = vec![self.input.clone(), self.output.clone(), self.side.clone()];
        for (op, states) in operators_with_state {
            for s in *states {
                topics.push(exactly::framework::state::changelog::topic_name(
                    &self.group,
                    op,
                    s,
                ));
            }
        }
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = delete_topic(&self.b, &refs);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn multiset<I: IntoIterator<Item = (String, String)>>(it: I) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for kv in it {
        *m.entry(kv).or_default() += 1;
    }
    m
}

fn assert_same(
    what: &str,
    got: &BTreeMap<(String, String), usize>,
    want: &BTreeMap<(String, String), usize>,
) {
    assert!(
        !want.is_empty(),
        "{what}: nothing expected: the test would prove nothing"
    );
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, n)| got.get(*k) < Some(*n))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, n)| want.get(*k) < Some(*n))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} expected, {} read; missing e.g. {missing:?}; extra or duplicated e.g. {extra:?}",
        want.values().sum::<usize>(),
        got.values().sum::<usize>()
    );
}

/// `n` records over `keys` keys, partitioned by key; timestamps from ten minutes ago in
/// steps of 10 ms with some records up to `disorder_ms` earlier than their position.
/// (Recent timestamps: the broker's time retention would delete records of 1970, and the
/// output records carry their input's timestamp.)
fn records(n: usize, keys: usize, disorder_ms: i64) -> Vec<Input> {
    let mut rng = common::copy_check::Rng(0x5eed_0000_0000_0001);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now - 600_000) / 1_000 * 1_000;
    (0..n)
        .map(|i| {
            let k = (i * 7 + i / 13) % keys;
            let shift = if disorder_ms > 0 && rng.below(5) == 0 {
                rng.below(disorder_ms as u64) as i64
            } else {
                0
            };
            (
                (k % PARTITIONS as usize) as i32,
                format!("k{k}"),
                format!("{}", i % 97),
                base + i as i64 * 10 - shift,
            )
        })
        .collect()
}

/// A window result's key as `key@start`.
fn window_label(r: &Record<Windowed<String>, u64>) -> Option<String> {
    r.key
        .as_ref()
        .map(|w| format!("{}@{}", w.key.clone().unwrap_or_default(), w.start))
}

/// What `op` emits, task by task, on the harness: the reference for time-based operators.
fn reference<O, F>(input: &[Input], make: F) -> Vec<Record<O::OutKey, O::OutValue>>
where
    O: Operator<String, String>,
    F: Fn(&mut Context) -> exactly::Result<O>,
{
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let mut h = Harness::build(&make).unwrap();
        for (_, k, v, ts) in input.iter().filter(|r| r.0 == p) {
            h.push_at(Some(k.clone()), v.clone(), *ts).unwrap();
        }
        out.extend(h.take_output());
    }
    out
}

#[test]
fn filter_map_inspect_and_branch_through_a_forced_rebalance() {
    let c = Case::new("ops-stateless");
    let mut input = records(6_000, 50, 0);
    for r in input.iter_mut().step_by(11) {
        r.2 = "not a number".into();
    }
    let side = c.side.clone();
    let output = c.output.clone();
    let from = c.input.clone();
    c.run(
        || {
            Pipeline::from_topic_with_key(from.clone(), Serde::string(), Serde::string())
                .filter_map(|v: String| v.parse::<u64>().ok())
                .inspect(|r: &Record<String, u64>| assert!(r.timestamp.is_some()))
                .branch(
                    "evens",
                    |r: &Record<String, u64>| r.value.is_multiple_of(2),
                    Sink::topic(side.clone(), Serde::string(), Serde::json()),
                )
                .to_topic(output.clone(), Serde::string(), Serde::json())
        },
        &input,
    );
    let numbers: Vec<(String, u64)> = input
        .iter()
        .filter_map(|(_, k, v, _)| Some((k.clone(), v.parse::<u64>().ok()?)))
        .collect();
    let part = |even: bool| {
        multiset(
            numbers
                .iter()
                .filter(|(_, n)| (n % 2 == 0) == even)
                .map(|(k, n)| (k.clone(), n.to_string())),
        )
    };
    assert_same("output (odd numbers)", &c.read(&c.output), &part(false));
    assert_same("side topic (even numbers)", &c.read(&c.side), &part(true));
    c.cleanup(&[]);
}

#[test]
fn reduce_and_aggregate_through_a_forced_rebalance() {
    let c = Case::new("ops-aggregate");
    let input = records(6_000, 40, 0);
    let (from, output) = (c.input.clone(), c.output.clone());
    c.run(
        || {
            Pipeline::from_topic_with_key(from.clone(), Serde::string(), Serde::string())
                .filter_map(|v: String| v.parse::<i64>().ok())
                .reduce("sum", |a, b| a + b)
                .emit_every_update()
                // (how many sums so far, the latest sum): a key's history, in order.
                .aggregate("history", || (0u64, 0i64), |(n, _), sum| (n + 1, sum))
                .emit_every_update()
                .to_topic(output.clone(), Serde::string(), Serde::json())
        },
        &input,
    );
    let mut sums: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    let want = multiset(input.iter().map(|(_, k, v, _)| {
        let s = sums.entry(k).or_default();
        *s = (s.0 + 1, s.1 + v.parse::<i64>().unwrap());
        (k.clone(), serde_json::to_string(&(s.0, s.1)).unwrap())
    }));
    assert_same("running (count, sum) per key", &c.read(&c.output), &want);
    c.cleanup(&[("sum", &["reduced"]), ("history", &["aggregates"])]);
}

#[test]
fn dedup_through_a_forced_rebalance() {
    let c = Case::new("ops-dedup");
    let input = records(6_000, 60, 300);
    let (from, output) = (c.input.clone(), c.output.clone());
    const HORIZON: Duration = Duration::from_millis(2_000);
    c.run(
        || {
            Pipeline::from_topic_with_key(from.clone(), Serde::string(), Serde::string())
                .dedup("dedup", HORIZON)
                .to_topic(output.clone(), Serde::string(), Serde::string())
        },
        &input,
    );
    let want = multiset(
        reference(&input, |ctx| Dedup::open(ctx, HORIZON.as_millis() as i64))
            .into_iter()
            .map(|r| (r.key.unwrap(), r.value)),
    );
    assert!(
        want.values().sum::<usize>() < input.len(),
        "the input must hold repeats"
    );
    assert_same("deduplicated records", &c.read(&c.output), &want);
    c.cleanup(&[("dedup", &["seen", "stream-time"])]);
}

#[test]
fn tumbling_window_counts_with_late_records_through_a_forced_rebalance() {
    let c = Case::new("ops-window");
    // Windows of 500 ms over 10 ms steps; 1 in 5 records up to 800 ms early, so some land
    // after their window closed (out-of-orderness 200 ms): late, to the side topic.
    let input = records(6_000, 30, 800);
    let (from, output, side) = (c.input.clone(), c.output.clone(), c.side.clone());
    let windows = move |side: &str| {
        Windows::tumbling(Duration::from_millis(500))
            .out_of_orderness(Duration::from_millis(200))
            .late_records_to(Sink::topic(
                side.to_string(),
                Serde::string(),
                Serde::string(),
            ))
    };
    c.run(
        || {
            Pipeline::from_topic_with_key(from.clone(), Serde::string(), Serde::string())
                .window_count("per-window", windows(&side))
                .map_key(window_label)
                .map(|n: u64| n.to_string())
                .to_topic(output.clone(), Serde::string(), Serde::string())
        },
        &input,
    );
    let reference = reference(&input, |ctx| {
        WindowAggregate::open(
            ctx,
            windows("late"),
            Arc::new(|| 0u64),
            Arc::new(|n: u64, _: String| n + 1),
        )
    });
    let want = multiset(reference.into_iter().map(|r| {
        let w = r.key.unwrap();
        (
            format!("{}@{}", w.key.unwrap(), w.start),
            r.value.to_string(),
        )
    }));
    assert_same("closed windows", &c.read(&c.output), &want);
    // Every record is counted once: in a closed window, in a still open one, or late.
    let late = c.read(&c.side).values().sum::<usize>();
    assert!(late > 0, "the input must hold late records");
    let closed: u64 = want
        .iter()
        .map(|((_, n), m)| n.parse::<u64>().unwrap() * *m as u64)
        .sum();
    assert!(closed as usize + late <= input.len());
    c.cleanup(&[("per-window", &["windows", "stream-time"])]);
}

#[test]
fn sessions_from_payload_times_close_when_the_input_goes_idle() {
    let c = Case::new("ops-idle-sessions");
    // Three parts 10 minutes of event time apart; in each, 20 keys (5 per partition) every
    // 10 ms, with a 3 s pause every 100 records: each key has one session of 5 records per
    // block. The payload "i@time" carries the event time; the Kafka timestamp is the same
    // for every record, so without `with_timestamp` each key would have one session.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 3_600_000;
    let mut input = Vec::new();
    let mut want = BTreeMap::new();
    for part in 0..3i64 {
        for i in 0..600i64 {
            let k = i % 20;
            let t = base + part * 600_000 + i * 10 + (i / 100) * 3_000;
            input.push((
                (k % PARTITIONS as i64) as i32,
                format!("k{k}"),
                format!("{i}@{t}"),
                base - 60_000,
            ));
            if i % 100 < 20 {
                // The key's first record of the block starts its session.
                want.insert((format!("k{k}@{t}"), "5".to_string()), 1);
            }
        }
    }
    let (from, output) = (c.input.clone(), c.output.clone());
    let b = c.b.clone();
    let expected = want.values().sum::<usize>();
    let out_topic = c.output.clone();
    c.run_until(
        || {
            Pipeline::from_topic_with_key(from.clone(), Serde::string(), Serde::string())
                .with_timestamp(|r: &Record<String, String>| {
                    r.value.split_once('@')?.1.parse().ok()
                })
                .session_count(
                    "sessions",
                    Windows::session(Duration::from_millis(1_000))
                        .close_when_idle(Duration::from_millis(300)),
                )
                .map_key(window_label)
                .map(|n: u64| n.to_string())
                .to_topic(output.clone(), Serde::string(), Serde::string())
        },
        &input,
        || {
            read_to_end(&b, &out_topic, Isolation::ReadCommitted, READ_DEADLINE)
                .map(|r| r.len() >= expected)
                .unwrap_or(false)
        },
    );
    assert_same("idle-closed sessions", &c.read(&c.output), &want);
    c.cleanup(&[("sessions", &["sessions", "stream-time"])]);
}

#[test]
fn a_tee_feeds_a_branch_with_its_own_repartition_and_output_in_the_same_transactions() {
    let c = Case::new("ops-tee");
    let input = records(6_000, 50, 0);
    let (from, output, side) = (c.input.clone(), c.output.clone(), c.side.clone());
    let counts = |of: &dyn Fn(&Input) -> String| {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        multiset(input.iter().map(|r| {
            let k = of(r);
            let n = seen.entry(k.clone()).or_default();
            *n += 1;
            (k, n.to_string())
        }))
    };
    let per_value = counts(&|r| r.2.clone());
    let expected = per_value.values().sum::<usize>();
    c.run_until(
        || {
            let side = side.clone();
            Pipeline::from_topic_with_key(from.clone(), Serde::string(), Serde::string())
                // The branch counts records per value (behind its own repartition) ...
                .tee(move |s| {
                    s.key_by(
                        "by-value",
                        |v: &String| v.clone(),
                        Serde::string(),
                        Serde::string(),
                    )
                    .count("per-value")
                    .emit_every_update()
                    .map(|n: u64| n.to_string())
                    .to_topic(side, Serde::string(), Serde::string())
                })
                // ... while the stream goes on to count records per key.
                .count("per-key")
                .emit_every_update()
                .map(|n: u64| n.to_string())
                .to_topic(output.clone(), Serde::string(), Serde::string())
        },
        &input,
        // The branch's hop is processed after the input: run until its output is complete.
        || c.read(&c.side).values().sum::<usize>() >= expected,
    );
    assert_same(
        "counts per key",
        &c.read(&c.output),
        &counts(&|r| r.1.clone()),
    );
    assert_same(
        "counts per value (the branch)",
        &c.read(&c.side),
        &per_value,
    );
    let hop = format!("{}-by-value-repartition", c.group);
    let _ = delete_topic(&c.b, &[&hop]);
    c.cleanup(&[("per-key", &["counts"]), ("per-value", &["counts"])]);
}
