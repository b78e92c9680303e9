//! A 3-node cluster loses the node that is the transaction and group coordinator and the
//! leader of most input and output partitions — SIGKILLed mid-run, back 10 s later. The
//! workers stay up (the other two nodes elect new leaders and a new coordinator; a worker
//! whose transaction or membership was lost recovers in place), and the output is exact:
//! a copy's read_committed output is its input, partition by partition, in order; a word
//! count's counts (through its repartition topic and changelog, both with 3 replicas)
//! strictly increase and end at each word's number of occurrences.
//!
//! It needs the local 3-node cluster (`scripts/kafka --brokers 3`, started here if it is
//! not running), so `cargo test` skips it; CI runs it in its own step:
//!
//! ```text
//! cargo test --test cluster -- --ignored
//! ```

mod common;

use common::copy_check::*;
use common::*;
use exactly::{Config, Pipeline, Runtime, Worker};
use exactly_testkit::cluster;
use exactly_testkit::wordcount::{self, CountCheck, KJV};
use std::time::{Duration, Instant};

/// How long the node stays away: longer than the workers' transaction and session
/// timeouts. This is the fault under test, not a synchronisation.
const OUTAGE: Duration = Duration::from_secs(10);
const PARTITIONS: i32 = 4;

/// Waits until `workers` have committed `n` more cycles between them — and, with
/// `each`, every one of them at least one — failing when one stops.
fn commits_go_on(workers: &[&Worker], n: u64, each: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let commits = || {
        workers
            .iter()
            .map(|w| w.stats().commits)
            .collect::<Vec<_>>()
    };
    let start = commits();
    loop {
        let now = commits();
        let behind: Vec<usize> = (0..workers.len())
            .filter(|&i| each && now[i] == start[i])
            .collect();
        if now.iter().sum::<u64>() >= start.iter().sum::<u64>() + n && behind.is_empty() {
            return;
        }
        if let Some(w) = workers.iter().find(|w| w.is_finished()) {
            panic!("a worker stopped {what}: {:?}", w.stats());
        }
        assert!(
            Instant::now() < deadline,
            "not enough commits {what} in 90 s: commits {start:?} -> {now:?}; workers without one: {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the local 3-node cluster; run: cargo test --test cluster -- --ignored"]
fn killing_the_coordinator_and_leader_node_stops_no_worker_and_the_output_is_exact() {
    if std::env::var_os("KAFKA_BROKERS").is_some() {
        eprintln!("skipped: KAFKA_BROKERS is set, and this test kills nodes of its own cluster");
        return;
    }
    init_tracing();
    let b = cluster::start().expect("the local 3-node cluster");
    let victim = cluster::coordinator(&b).unwrap();
    let group_coordinator = cluster::leaders(&b, "__consumer_offsets").unwrap()[0];
    eprintln!(
        "cluster {b}: node {victim} coordinates transactions, node {group_coordinator} groups"
    );
    // The victim is the preferred leader of all but one partition of every topic.
    let topic = |prefix: &str| {
        let name = unique_name(prefix);
        create_topic_assigned(&b, &name, &cluster::assignment_led_by(victim, PARTITIONS)).unwrap();
        name
    };
    let (copy_in, copy_out) = (topic("cluster-copy-in"), topic("cluster-copy-out"));
    let (lines_in, counts_out) = (topic("cluster-lines"), topic("cluster-counts"));
    for t in [&copy_in, &copy_out, &lines_in, &counts_out] {
        let leaders = cluster::leaders(&b, t).unwrap();
        assert_eq!(
            leaders.iter().filter(|&&l| l == victim).count(),
            PARTITIONS as usize - 1,
            "node {victim} should lead most partitions of {t}: {leaders:?}"
        );
    }

    // About 40 s of live input for both jobs.
    let copy_feed = Feeder::start(&b, &copy_in, PARTITIONS, 60_000, 1_500);
    let lines: Vec<String> = KJV.lines().take(16_000).map(str::to_string).collect();
    let expected = wordcount::expected_counts(lines.iter().map(String::as_str));
    let lines_feed = {
        let lines = lines.clone();
        Feeder::start_with(&b, &lines_in, lines.len() as u64, 400, move |i| {
            ((i % PARTITIONS as u64) as i32, lines[i as usize].clone())
        })
    };

    let config = |group: &str| {
        Config::new(group, &b)
            .with_internal_replication_factor(3)
            .with_session_timeout(Duration::from_secs(6))
            .with_transaction_timeout(Duration::from_secs(5))
    };
    let (copy_group, count_group) = (unique_name("cluster-copy"), unique_name("cluster-wc"));
    let state = std::env::temp_dir().join(unique_name("cluster-state"));
    let copiers = Runtime::new(config(&copy_group));
    let counters = Runtime::new(config(&count_group).with_state_dir(&state));
    let workers = [
        copiers.spawn(Pipeline::copy(&copy_in, &copy_out)).unwrap(),
        copiers.spawn(Pipeline::copy(&copy_in, &copy_out)).unwrap(),
        counters
            .spawn(wordcount::pipeline(&lines_in, &counts_out))
            .unwrap(),
        counters
            .spawn(wordcount::pipeline(&lines_in, &counts_out))
            .unwrap(),
    ];
    let all: Vec<&Worker> = workers.iter().collect();
    commits_go_on(&all, 10, true, "before the node was killed");

    cluster::kill_node(victim).unwrap();
    let killed = Instant::now();
    // Two nodes are two in-sync replicas: the workers commit while the third is away.
    commits_go_on(&all, 10, false, "while a node was down");
    eprintln!(
        "commits went on {:?} after node {victim} was killed; new transaction coordinator: node {}",
        killed.elapsed(),
        cluster::coordinator(&b).unwrap()
    );
    if let Some(rest) = OUTAGE.checked_sub(killed.elapsed()) {
        std::thread::sleep(rest);
    }
    cluster::start().expect("node back");
    // Every worker, not just the group: a worker stuck in a transactional call (librdkafka
    // #5511, see create_producer) leaves the others committing.
    commits_go_on(&all, 10, true, "after the node came back");

    let fed = copy_feed.join();
    lines_feed.join();
    wait_until_committed_by(&b, &copy_group, &copy_in, Duration::from_secs(180), &all);
    wait_until_committed_by(&b, &count_group, &lines_in, Duration::from_secs(180), &all);
    let repartition = format!("{count_group}-words-repartition");
    wait_until_committed_by(
        &b,
        &count_group,
        &repartition,
        Duration::from_secs(180),
        &all,
    );
    let recoveries: u64 = workers.iter().map(|w| w.stats().recoveries).sum();
    for w in workers {
        w.stop();
        w.join().expect("a worker stopped with an error");
    }

    let copy = compare_copy(&b, &copy_in, &copy_out);
    let counts = read_to_end(&b, &counts_out, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    let check = CountCheck::of(&counts, &expected);
    eprintln!("copy: {copy:?}; word count: {check}; {recoveries} recoveries");
    assert_eq!(copy.input as u64, fed);
    assert!(copy.is_exact(), "{copy:?}");
    assert!(check.is_exact(), "{check}");
    let changelog =
        exactly::framework::state::changelog::topic_name(&count_group, "count", "counts");
    delete_topic(
        &b,
        &[
            &copy_in,
            &copy_out,
            &lines_in,
            &counts_out,
            &repartition,
            &changelog,
        ],
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(state);
}
