//! A zombie worker: stalled inside an operator past `max.poll.interval.ms`, its partitions
//! move to another worker. When it wakes it must not commit: it is fenced, recovers in place
//! (a new producer and consumer, a rejoin) — or, with `max_recoveries = 0`, stops with a
//! clear error — and the output stays exact.

mod common;

use common::copy_check::*;
use common::*;
use exactly::framework::{Collector, Context, Operator, Partitioning, Record};
use exactly::{Config, Error, Pipeline, Runtime, Serde, Sink};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Raw = Option<Vec<u8>>;

/// Passes records through; the first time it sees the value `STALL` it raises `stalling`
/// and blocks for `stall` (this is the stall under test, not a synchronisation).
struct Staller {
    armed: Arc<AtomicBool>,
    stalling: Arc<AtomicBool>,
    stall: Duration,
}

impl Operator<Raw, Raw> for Staller {
    type OutKey = Raw;
    type OutValue = Raw;
    fn process(
        &mut self,
        r: Record<Raw, Raw>,
        _: &mut Context,
        out: &mut dyn Collector<Raw, Raw>,
    ) -> exactly::Result<()> {
        if r.value.as_deref() == Some(b"STALL".as_slice())
            && self.armed.swap(false, Ordering::SeqCst)
        {
            self.stalling.store(true, Ordering::SeqCst);
            std::thread::sleep(self.stall);
        }
        out.collect(r)
    }
}

/// The zombie's run: its stall, a successor that takes over, and the output.
fn stalled_zombie(
    max_recoveries: u32,
) -> std::result::Result<exactly::framework::StatsSnapshot, Error> {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "zombie-in", 2);
    let output = new_topic(&b, "zombie-out", 2);
    let group = unique_name("zombie");
    let mut records: Vec<(Option<i32>, Option<&str>, String)> = Vec::new();
    for p in 0..2 {
        for i in 0..500 {
            records.push((Some(p), None, format!("p{p}-{i:08}")));
        }
    }
    records.insert(250, (Some(0), None, "STALL".to_string()));
    produce(&b, &input, records).unwrap();

    let armed = Arc::new(AtomicBool::new(true));
    let stalling = Arc::new(AtomicBool::new(false));
    let (a, s) = (armed.clone(), stalling.clone());
    let pipeline = Pipeline::from_topic_with_key(&input, Serde::raw(), Serde::raw())
        .apply("staller", move || Staller {
            armed: a.clone(),
            stalling: s.clone(),
            stall: Duration::from_secs(9),
        })
        .to(Sink::topic(&output, Serde::raw(), Serde::raw())
            .partitioning(Partitioning::SameAsInput));
    let config = Config::new(&group, &b)
        .with_session_timeout(Duration::from_secs(3))
        .with_max_poll_interval(Duration::from_secs(3))
        .with_commit_max_records(1_000_000)
        .with_commit_interval(Duration::from_millis(200))
        .with_consumer_property("heartbeat.interval.ms", "500");
    let runtime = Runtime::new(config.clone().with_max_recoveries(max_recoveries));
    let zombie = runtime.spawn(pipeline.clone()).unwrap();

    // Wait for the stall, then start the worker that takes over.
    let t0 = Instant::now();
    while !stalling.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the worker never reached the STALL record"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let successor = Runtime::new(config).spawn(pipeline).unwrap();

    let zombie_end = if max_recoveries == 0 {
        zombie
            .join()
            .map(|()| panic!("the zombie must not finish normally"))
    } else {
        // It wakes, is refused, and starts again as a new member.
        let t0 = Instant::now();
        while zombie.stats().recoveries == 0 {
            assert!(
                !zombie.is_finished(),
                "the zombie stopped instead of recovering"
            );
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the zombie did not recover: {:?}",
                zombie.stats()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(zombie)
    };
    wait_until_committed(&b, &group, &input, Duration::from_secs(60));
    successor.stop();
    successor.join().unwrap();
    let zombie_end = zombie_end.map(|zombie| {
        let stats = zombie.stats();
        zombie.stop();
        zombie.join().expect("the recovered zombie stops cleanly");
        stats
    });
    let report = compare_copy(&b, &input, &output);
    assert_eq!(report.input, 1001);
    assert!(report.is_exact(), "{report:?}");
    delete_topic(&b, &[&input, &output]).unwrap();
    zombie_end
}

#[test]
fn a_stalled_worker_is_fenced_recovers_in_place_and_the_output_stays_exact() {
    let stats = stalled_zombie(10).expect("the zombie recovers");
    assert!(stats.recoveries >= 1, "{stats:?}");
}

#[test]
fn with_max_recoveries_0_a_stalled_worker_stops_fenced_and_the_output_stays_exact() {
    let err = stalled_zombie(0).expect_err("the zombie stops");
    eprintln!("zombie stopped with: {err}");
    assert!(
        matches!(err, Error::Fenced { .. }),
        "expected a fencing error, got {err:?}"
    );
    assert!(err.to_string().contains("fenced"), "{err}");
}

/// A copier process without static membership.
fn copier_member(
    brokers: &str,
    group: &str,
    input: &str,
    output: &str,
    name: &str,
) -> LoggedProcess {
    let mut cmd = std::process::Command::new(copier_binary());
    cmd.args(["--brokers", brokers, "--group", group])
        .args(["--input", input, "--output", output])
        .args([
            "--session-timeout-ms",
            "3000",
            "--commit-interval-ms",
            "1000",
        ])
        // Longer than the pause: only the group (not the transaction timeout) fences it.
        .env("EXACTLY_TRANSACTION_TIMEOUT_MS", "60000");
    LoggedProcess::spawn(cmd, &format!("{group}-{name}"))
}

#[test]
fn a_member_paused_past_its_session_timeout_cannot_commit_after_its_partitions_moved() {
    let b = brokers();
    let input = new_topic(&b, "zombie-pause-in", 2);
    let output = new_topic(&b, "zombie-pause-out", 2);
    let group = unique_name("zombie-pause");
    let feeder = Feeder::start(&b, &input, 2, 40_000, 4_000);
    let zombie = copier_member(&b, &group, &input, &output, "zombie");
    zombie.wait_started();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_offsets(&b, &group, &input)
        .unwrap()
        .iter()
        .all(|(_, o)| o.is_none())
    {
        assert!(
            Instant::now() < deadline,
            "the first member committed nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Paused (heartbeats included) with a transaction open: the group drops it after 3 s
    // and gives its partitions to the successor.
    unsafe {
        libc::kill(zombie.child.id() as i32, libc::SIGSTOP);
    }
    let before: Vec<(i32, Option<i64>)> = committed_offsets(&b, &group, &input).unwrap();
    let successor = copier_member(&b, &group, &input, &output, "successor");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = committed_offsets(&b, &group, &input).unwrap();
        if now.iter().zip(&before).all(|(n, o)| n.1 > o.1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the successor did not take over: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The zombie wakes up with its old transaction and position.
    unsafe {
        libc::kill(zombie.child.id() as i32, libc::SIGCONT);
    }
    let fed = feeder.join();
    wait_until_committed(&b, &group, &input, Duration::from_secs(120));
    let mut zombie = zombie;
    match zombie.wait_exit(Duration::ZERO) {
        Some(status) => eprintln!(
            "the zombie stopped by itself ({status}):\n{}",
            zombie.tail(5)
        ),
        None => zombie.terminate_cleanly(),
    }
    successor.terminate_cleanly();
    let report = compare_copy(&b, &input, &output);
    assert_eq!(report.input as u64, fed);
    assert!(report.is_exact(), "{report:?}");
    delete_topic(&b, &[&input, &output]).unwrap();
}
