//! Drives copier workers and checks a copy against its input.

use super::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a copy looks like next to its input, partition by partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub input: usize,
    pub output: usize,
    /// Input records with no copy.
    pub lost: usize,
    /// Copies beyond the first of an input record.
    pub duplicated: usize,
    /// Partitions whose output, duplicates removed, is not in input order.
    pub out_of_order: Vec<i32>,
}

impl CopyReport {
    pub fn is_exact(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order.is_empty()
            && self.input == self.output
    }
}

/// Compares `output` (read_committed, to its end) with `input`, partition by partition.
pub fn compare_copy(brokers: &str, input: &str, output: &str) -> CopyReport {
    let inp =
        read_to_end(brokers, input, Isolation::ReadCommitted, READ_DEADLINE).expect("read input");
    let out =
        read_to_end(brokers, output, Isolation::ReadCommitted, READ_DEADLINE).expect("read output");
    assert!(
        !inp.is_empty(),
        "the input is empty: the test would prove nothing"
    );
    let by_part = |rs: &[ReadRecord]| {
        let mut m: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
        for r in rs {
            m.entry(r.partition)
                .or_default()
                .push(r.value.clone().unwrap_or_default());
        }
        m
    };
    let (pin, pout) = (by_part(&inp), by_part(&out));
    let mut report = CopyReport {
        input: inp.len(),
        output: out.len(),
        ..Default::default()
    };
    for (p, ins) in &pin {
        let outs = pout.get(p).cloned().unwrap_or_default();
        let mut counts: BTreeMap<&[u8], i64> = BTreeMap::new();
        for v in &outs {
            *counts.entry(v).or_default() += 1;
        }
        for v in ins {
            match counts.get(v.as_slice()).copied().unwrap_or(0) {
                0 => report.lost += 1,
                n => report.duplicated += (n - 1) as usize,
            }
        }
        let inputs: std::collections::HashSet<&[u8]> = ins.iter().map(Vec::as_slice).collect();
        // Records that are in no input at all (should never happen) count as duplicates.
        report.duplicated += outs
            .iter()
            .filter(|v| !inputs.contains(v.as_slice()))
            .count();
        // Order: the first copy of each record must appear in input order.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&[u8]> = outs
            .iter()
            .map(Vec::as_slice)
            .filter(|v| seen.insert(*v))
            .collect();
        let expected: Vec<&[u8]> = ins
            .iter()
            .map(Vec::as_slice)
            .filter(|v| seen.contains(v))
            .collect();
        if firsts != expected {
            report.out_of_order.push(*p);
        }
    }
    report
}

/// Writes `total` records `p{partition}-{seq}` round-robin over `partitions`, in batches,
/// at about `per_second`, from a background thread.
pub struct Feeder {
    handle: Option<JoinHandle<u64>>,
}

impl Feeder {
    pub fn start(
        brokers: &str,
        topic: &str,
        partitions: i32,
        total: u64,
        per_second: u64,
    ) -> Feeder {
        let parts = partitions as u64;
        Feeder::start_with(brokers, topic, total, per_second, move |i| {
            let p = (i % parts) as i32;
            (p, format!("p{p}-{:08}", i / parts))
        })
    }

    /// Writes `total` records, record `i` being `record(i)` = (partition, value), at about
    /// `per_second`, from a background thread.
    pub fn start_with(
        brokers: &str,
        topic: &str,
        total: u64,
        per_second: u64,
        record: impl Fn(u64) -> (i32, String) + Send + 'static,
    ) -> Feeder {
        let (b, t) = (brokers.to_string(), topic.to_string());
        let handle = std::thread::spawn(move || {
            let loader = Loader::new(&b).expect("loader");
            let batch = (per_second / 10).max(1);
            let started = Instant::now();
            let mut sent = 0u64;
            while sent < total {
                let n = batch.min(total - sent);
                let records = (sent..sent + n).map(|i| {
                    let (p, value) = record(i);
                    (Some(p), None::<&str>, value)
                });
                loader.send(&t, records).expect("feed input");
                sent += n;
                // Pace the feed: this is rate limiting, not synchronisation.
                let due = Duration::from_secs_f64(sent as f64 / per_second as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            sent
        });
        Feeder {
            handle: Some(handle),
        }
    }

    pub fn join(mut self) -> u64 {
        self.handle.take().unwrap().join().expect("feeder panicked")
    }
}

/// Waits until the group has committed everything in `topic` (see `testkit::caught_up`).
pub fn wait_until_committed(brokers: &str, group: &str, topic: &str, deadline: Duration) {
    wait_until_committed_by(brokers, group, topic, deadline, &[]);
}

/// As [`wait_until_committed`], failing at once (with its error) when one of `workers`
/// has stopped: nobody would commit the rest.
pub fn wait_until_committed_by(
    brokers: &str,
    group: &str,
    topic: &str,
    deadline: Duration,
    workers: &[&exactly::Worker],
) {
    let give_up = Instant::now() + deadline;
    while !caught_up(brokers, group, topic).unwrap() {
        if let Some(w) = workers.iter().find(|w| w.is_finished()) {
            panic!(
                "a worker stopped before {topic} was processed: {:?}",
                w.stats()
            );
        }
        assert!(
            Instant::now() < give_up,
            "group {group} did not commit the end of {topic} within {deadline:?}: committed {:?}, ends {:?}; workers: {:#?}",
            committed_offsets(brokers, group, topic).unwrap(),
            exactly_testkit::reader::high_watermarks(brokers, topic).unwrap(),
            workers.iter().map(|w| w.stats()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The copier example's binary, built by `cargo test` next to the test binaries.
pub fn copier_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("copier");
    assert!(
        bin.exists(),
        "{} not built: plain `cargo test` builds it; with `--test NAME` run `cargo build --examples` first",
        bin.display()
    );
    bin
}

/// Starts one copier worker (`--instance-id instance`) logging to a file named after the group.
pub fn spawn_copier(
    brokers: &str,
    group: &str,
    input: &str,
    output: &str,
    guarantee: &str,
    instance: &str,
) -> LoggedProcess {
    let mut cmd = Command::new(copier_binary());
    cmd.args([
        "--brokers",
        brokers,
        "--group",
        group,
        "--input",
        input,
        "--output",
        output,
    ])
    .args([
        "--guarantee",
        guarantee,
        "--instance-id",
        instance,
        "--session-timeout-ms",
        "6000",
    ]);
    LoggedProcess::spawn(cmd, &format!("{group}-{instance}"))
}

/// A tiny deterministic random source (xorshift), seeded and printed by each test.
pub struct Rng(pub u64);

impl Rng {
    pub fn from_time() -> Rng {
        let seed = std::env::var("EXACTLY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("random seed: {seed} (EXACTLY_TEST_SEED={seed} repeats this run)");
        Rng(seed)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A flag to stop helper threads.
pub fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

pub fn is_set(f: &AtomicBool) -> bool {
    f.load(Ordering::Relaxed)
}
