//! A chaos check for your own pipeline: run it on the real broker with several worker
//! processes under forced rebalances and SIGKILLs, read its output `read_committed`, and
//! compare it with what [`TestDriver`] makes of the same input.
//!
//! ```no_run
//! use exactly_framework::{Pipeline, Serde};
//! use exactly_testkit::chaos::{self, Chaos};
//!
//! fn upper(input: &str, output: &str) -> Pipeline {
//!     Pipeline::from_topic_with_key(input, Serde::string(), Serde::string())
//!         .to_topic(output, Serde::string(), Serde::string())
//! }
//!
//! #[test]
//! fn my_pipeline_survives_chaos() {
//!     let input: Vec<(Option<Vec<u8>>, Vec<u8>)> =
//!         (0..10_000).map(|i| (Some(format!("k{}", i % 50).into_bytes()), format!("{i}").into_bytes())).collect();
//!     // The workers are this test re-run in child processes: give its name.
//!     let report = chaos::check("my_pipeline_survives_chaos", upper, &input, Chaos::default()).unwrap();
//!     assert!(report.is_exact(), "{report}");
//! }
//! ```
//!
//! The workers are child processes running the calling test again (`--exact name`): when
//! [`check`] runs in one of them it builds the pipeline, runs a worker until it is stopped
//! or killed, and exits — the rest of the test never runs there.

use crate::{
    bootstrap_servers, caught_up, create_topic, delete_topic, err, read_to_end, unique_name,
    Isolation, Loader, Result,
};
use exactly_framework::testing::TestDriver;
use exactly_framework::{Config, Guarantee, Pipeline, Runtime};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An input record: key (`None`: no key) and value.
pub type InputRecord = (Option<Vec<u8>>, Vec<u8>);

/// The variable that makes [`check`] run a worker (set for the child processes).
const WORKER_ENV: &str = "EXACTLY_CHAOS_WORKER";

/// How the output is compared with the driver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Every (key, value) as many times as the driver wrote it, and each key's values in
    /// the driver's order. For outputs that do not depend on how the input partitions
    /// interleave: stateless pipelines, per-key state over keyed input, aggregations with
    /// `emit_every_update()`.
    Multiset,
    /// Each key's last value only: for aggregations that emit on commit (how many updates
    /// a commit folds depends on timing) and for order-insensitive results.
    LastPerKey,
}

/// What the check does to the workers.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// Worker processes at the start.
    pub workers: usize,
    /// Input partitions (the output topic gets as many).
    pub partitions: i32,
    /// SIGKILLs of a random worker (each restarted at once on the same state directory).
    pub kills: u32,
    /// Extra workers that join, and leave again with SIGTERM, between the kills.
    pub joins: u32,
    /// Time between two actions; the input is loaded in parts across them.
    pub every: Duration,
    /// Session timeout of the workers (how long a killed worker's partitions wait).
    pub session_timeout: Duration,
    /// How the output is compared.
    pub compare: Compare,
    /// The workers' guarantee (ExactlyOnce by default; the others show what they lose or
    /// duplicate under the same chaos).
    pub guarantee: Guarantee,
    /// Longest time to wait for the group to catch up after the last action.
    pub deadline: Duration,
}

impl Default for Chaos {
    fn default() -> Self {
        Chaos {
            workers: 2,
            partitions: 4,
            kills: 3,
            joins: 2,
            every: Duration::from_secs(3),
            session_timeout: Duration::from_secs(6),
            compare: Compare::Multiset,
            guarantee: Guarantee::ExactlyOnce,
            deadline: Duration::from_secs(180),
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    /// Input records.
    pub input: usize,
    /// Records (or, under [`Compare::LastPerKey`], keys) the driver wrote.
    pub expected: usize,
    /// Records read committed (or keys, likewise).
    pub read: usize,
    /// Expected but missing, with how many times (at most 10 listed).
    pub lost: Vec<(String, usize)>,
    /// Read more often than expected, with how many extra (at most 10 listed).
    pub duplicated: Vec<(String, usize)>,
    /// Keys whose values came in another order than the driver's (at most 10 listed).
    pub out_of_order: Vec<String>,
    /// Expected records (or keys) missing, in all.
    pub lost_total: usize,
    /// Records (or keys) read more often than expected (or not expected), in all.
    pub duplicated_total: usize,
    /// Missing, extra and misordered, in all.
    pub wrong: usize,
    /// SIGKILLs done.
    pub kills: u32,
    /// Workers that joined and left.
    pub joins: u32,
    /// From the first worker's start until the group caught up.
    pub elapsed: Duration,
    /// The output as read committed: (key, value) as UTF-8 (lossy), partition by partition
    /// in offset order.
    pub committed: Vec<(String, String)>,
}

impl ChaosReport {
    /// Nothing lost, nothing duplicated, nothing out of order, and something was compared.
    pub fn is_exact(&self) -> bool {
        self.wrong == 0 && self.expected > 0
    }
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} input records; expected {}, read {} committed; {} wrong (lost e.g. {:?}, \
             duplicated e.g. {:?}, out of order e.g. {:?}); {} kills, {} joins, {:.1} s",
            self.input,
            self.expected,
            self.read,
            self.wrong,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.kills,
            self.joins,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Runs `pipeline(input_topic, output_topic)` under [`Chaos`] on the broker of
/// [`bootstrap_servers`] (`KAFKA_BROKERS`, or the local one), fed `input` (key, value),
/// and compares its committed output with [`TestDriver`]'s for the same records in the
/// same partitions. `test_name` is the calling test's name as `cargo test` lists it: the
/// workers are that test run again.
///
/// # Errors
/// When the broker, the topics or a worker process cannot be set up, or the group does not
/// catch up within [`Chaos::deadline`]. A wrong output is not an error: see the report.
pub fn check(
    test_name: &str,
    pipeline: fn(&str, &str) -> Pipeline,
    input: &[InputRecord],
    chaos: Chaos,
) -> Result<ChaosReport> {
    run_if_worker(pipeline);
    let brokers = bootstrap_servers()?;
    let group = unique_name("chaos");
    let (in_topic, out_topic) = (format!("{group}-in"), format!("{group}-out"));
    create_topic(&brokers, &in_topic, chaos.partitions)?;
    create_topic(&brokers, &out_topic, chaos.partitions)?;
    let dir = std::env::temp_dir().join(&group);
    let spawn = |n: usize| -> Result<Child> {
        let exe = std::env::current_exe().map_err(|e| err(e.to_string()))?;
        Command::new(exe)
            .args([test_name, "--exact", "--nocapture", "--include-ignored"])
            .env(
                WORKER_ENV,
                format!(
                    "{brokers}\n{group}\n{in_topic}\n{out_topic}\n{}\n{}\n{:?}",
                    dir.join(format!("worker-{n}")).display(),
                    chaos.session_timeout.as_millis(),
                    chaos.guarantee
                ),
            )
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("starting a worker process: {e}")))
    };

    let started = Instant::now();
    let parts = (chaos.kills + 2 * chaos.joins + 1) as usize;
    let mut chunks = input.chunks(input.len().div_ceil(parts).max(1));
    let loader = Loader::new(&brokers)?;
    let load = |chunk: Option<&[InputRecord]>| -> Result<()> {
        if let Some(c) = chunk {
            loader.send(&in_topic, c.iter().map(|(k, v)| (None, k.as_deref(), v)))?;
        }
        Ok(())
    };
    load(chunks.next())?;
    let mut workers: Vec<Child> = (0..chaos.workers).map(spawn).collect::<Result<_>>()?;
    let mut report = ChaosReport {
        input: input.len(),
        ..ChaosReport::default()
    };
    let mut rng = started.elapsed().as_nanos() as u64 | 1;
    let (mut kills, mut joins) = (chaos.kills, chaos.joins);
    let mut extra: Option<Child> = None;
    let mut n = workers.len();
    while kills > 0 || joins > 0 || extra.is_some() {
        std::thread::sleep(chaos.every);
        load(chunks.next())?;
        if let Some(mut e) = extra.take() {
            stop(&mut e);
            continue;
        }
        if kills > 0 && (joins == 0 || kills >= joins) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let victim = (rng % workers.len() as u64) as usize;
            let _ = workers[victim].kill();
            let _ = workers[victim].wait();
            eprintln!("chaos: SIGKILLed worker {victim}; restarting it");
            workers[victim] = spawn(victim)?;
            kills -= 1;
            report.kills += 1;
        } else {
            eprintln!("chaos: worker {n} joins");
            extra = Some(spawn(n)?);
            n += 1;
            joins -= 1;
            report.joins += 1;
        }
    }
    for c in chunks {
        load(Some(c))?;
    }
    let topics = pipeline(&in_topic, &out_topic).topics_read(&group);
    let deadline = Instant::now() + chaos.deadline;
    loop {
        let mut done = true;
        for t in &topics {
            done &= caught_up(&brokers, &group, t)?;
        }
        if done {
            break;
        }
        if Instant::now() > deadline {
            for w in &mut workers {
                let _ = w.kill();
            }
            return Err(err(format!(
                "the group did not commit all its input within {:?} after the last action",
                chaos.deadline
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    report.elapsed = started.elapsed();
    for w in &mut workers {
        stop(w);
    }

    // The driver, fed each partition's records as the broker holds them.
    let mut driver = TestDriver::new(pipeline(&in_topic, &out_topic))
        .with_default_partitions(chaos.partitions)
        .with_partitions(&in_topic, chaos.partitions);
    let mut fed = read_to_end(
        &brokers,
        &in_topic,
        Isolation::ReadCommitted,
        chaos.deadline,
    )?;
    fed.sort_by_key(|r| (r.partition, r.offset));
    for r in &fed {
        driver
            .pipe_to(
                &in_topic,
                Some(r.partition),
                r.key.as_deref(),
                r.value.as_deref(),
                r.timestamp.unwrap_or(0),
            )
            .map_err(|e| err(format!("the test driver: {e}")))?;
    }
    let text =
        |b: &Option<Vec<u8>>| String::from_utf8_lossy(b.as_deref().unwrap_or_default()).to_string();
    let want: Vec<(String, String)> = driver
        .records(&out_topic)
        .iter()
        .map(|r| (text(&r.key), text(&r.value)))
        .collect();
    let mut got_records = read_to_end(
        &brokers,
        &out_topic,
        Isolation::ReadCommitted,
        chaos.deadline,
    )?;
    got_records.sort_by_key(|r| (r.partition, r.offset));
    let got: Vec<(String, String)> = got_records
        .iter()
        .map(|r| (text(&r.key), text(&r.value)))
        .collect();
    compare(&mut report, chaos.compare, &want, &got);
    report.committed = got;
    let _ = delete_topic(&brokers, &[&in_topic, &out_topic]);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// In a worker process that [`check`] started: runs `pipeline` until SIGTERM and exits
/// (never returns). Elsewhere it returns at once. `check` calls it first; a program (not a
/// test) that runs checks calls it at the top of `main`, before anything it would not want
/// its workers to do.
pub fn run_if_worker(pipeline: fn(&str, &str) -> Pipeline) {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        run_worker(&spec, pipeline);
    }
}

/// Fills the report's comparison of `got` with `want` ((key, value) in partition order).
fn compare(
    report: &mut ChaosReport,
    how: Compare,
    want: &[(String, String)],
    got: &[(String, String)],
) {
    let count = |rs: &[(String, String)]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (k, v) in rs {
            let item = match how {
                Compare::Multiset => format!("{k}={v}"),
                Compare::LastPerKey => k.clone(),
            };
            *m.entry(item).or_default() += 1;
        }
        m
    };
    let per_key = |rs: &[(String, String)]| -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in rs {
            m.entry(k.clone()).or_default().push(v.clone());
        }
        m
    };
    let (w, g) = (per_key(want), per_key(got));
    match how {
        Compare::Multiset => {
            let (wc, gc) = (count(want), count(got));
            report.expected = want.len();
            report.read = got.len();
            for (item, n) in &wc {
                let have = gc.get(item).copied().unwrap_or(0);
                if have < *n {
                    report.wrong += n - have;
                    report.lost_total += n - have;
                    report.lost.push((item.clone(), n - have));
                }
            }
            for (item, n) in &gc {
                let want_n = wc.get(item).copied().unwrap_or(0);
                if *n > want_n {
                    report.wrong += n - want_n;
                    report.duplicated_total += n - want_n;
                    report.duplicated.push((item.clone(), n - want_n));
                }
            }
            if report.wrong == 0 {
                for (k, values) in &w {
                    if g.get(k) != Some(values) {
                        report.wrong += 1;
                        report.out_of_order.push(k.clone());
                    }
                }
            }
        }
        Compare::LastPerKey => {
            report.expected = w.len();
            report.read = g.len();
            for (k, values) in &w {
                match g.get(k).and_then(|vs| vs.last()) {
                    None => {
                        report.lost_total += 1;
                        report.lost.push((
                            format!("{k}={}", values.last().cloned().unwrap_or_default()),
                            1,
                        ));
                    }
                    Some(last) if Some(last) != values.last() => report
                        .out_of_order
                        .push(format!("{k}: last {last}, expected {:?}", values.last())),
                    Some(_) => continue,
                }
                report.wrong += 1;
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                report.wrong += 1;
                report.duplicated_total += 1;
                report.duplicated.push((k.clone(), 1));
            }
        }
    }
    report.lost.truncate(10);
    report.duplicated.truncate(10);
    report.out_of_order.truncate(10);
}

/// SIGTERM, then wait (SIGKILL after 30 s).
fn stop(child: &mut Child) {
    // SAFETY: kill(2) with a child's pid and a valid signal number.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// In a worker process: runs the pipeline until SIGTERM, then exits (never returns).
fn run_worker(spec: &str, pipeline: fn(&str, &str) -> Pipeline) -> ! {
    let f: Vec<&str> = spec.lines().collect();
    let [brokers, group, input, output, dir, session_ms, guarantee] = f[..] else {
        eprintln!("chaos worker: a malformed {WORKER_ENV}");
        std::process::exit(2);
    };
    let session = Duration::from_millis(session_ms.parse().unwrap_or(6_000));
    let guarantee = match guarantee {
        "AtLeastOnce" => Guarantee::AtLeastOnce,
        "AutoCommit" => Guarantee::AutoCommit,
        _ => Guarantee::ExactlyOnce,
    };
    let config = Config::new(group, brokers)
        .with_state_dir(dir)
        .with_session_timeout(session)
        .with_guarantee(guarantee);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(Runtime::new(config).run(pipeline(input, output)));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("chaos worker: {e}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_comparison_finds_lost_duplicated_and_misordered_records() {
        let want = kv(&[("a", "1"), ("a", "2"), ("b", "1")]);
        let mut r = ChaosReport::default();
        compare(&mut r, Compare::Multiset, &want, &want);
        assert!(r.is_exact(), "{r}");

        let mut r = ChaosReport::default();
        compare(
            &mut r,
            Compare::Multiset,
            &want,
            &kv(&[("a", "1"), ("a", "2"), ("a", "2")]),
        );
        assert_eq!(r.lost, [("b=1".to_string(), 1)]);
        assert_eq!(r.duplicated, [("a=2".to_string(), 1)]);
        assert_eq!(r.wrong, 2);

        let mut r = ChaosReport::default();
        compare(
            &mut r,
            Compare::Multiset,
            &want,
            &kv(&[("a", "2"), ("a", "1"), ("b", "1")]),
        );
        assert_eq!(r.out_of_order, ["a"]);
        assert!(!r.is_exact());

        let mut r = ChaosReport::default();
        compare(
            &mut r,
            Compare::LastPerKey,
            &want,
            &kv(&[("a", "2"), ("b", "1"), ("c", "9")]),
        );
        assert_eq!(
            r.duplicated,
            [("c".to_string(), 1)],
            "a key the driver never wrote"
        );
        let mut r = ChaosReport::default();
        compare(
            &mut r,
            Compare::LastPerKey,
            &want,
            &kv(&[("a", "1"), ("a", "2"), ("b", "1")]),
        );
        assert!(r.is_exact());
        let mut empty = ChaosReport::default();
        compare(&mut empty, Compare::Multiset, &[], &[]);
        assert!(!empty.is_exact(), "nothing compared proves nothing");
    }
}
