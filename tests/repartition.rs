//! The repartition hop (`key_by`) is exactly-once: a word count whose two sub-pipelines
//! (lines → words through the internal topic → counts) commit in the consumers' transactions,
//! checked word by word: each word's output must be exactly 1, 2, ..., n in order — a lost
//! or duplicated record on either side of the hop breaks a sequence.

mod common;

use common::copy_check::{copier_binary, Rng};
use common::corpus::Corpus;
use common::*;
use exactly::prelude::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn word_count_through_a_repartition_is_exact_across_rebalances() {
    init_tracing();
    let c = Corpus::load("repartition-rebalance", 3_000);
    let dir = std::env::temp_dir().join(unique_name("exactly-repartition"));
    let config = |w: &str| {
        Config::new(&c.group, &c.b)
            .with_state_dir(dir.join(w))
            .with_commit_max_records(2_000)
            .with_consumer_property("heartbeat.interval.ms", "500")
    };
    let w1 = Runtime::new(config("w1"))
        .spawn(wordcount::pipeline(&c.input, &c.output))
        .unwrap();
    for i in 0..3 {
        let w = Runtime::new(config(&format!("x{i}")))
            .spawn(wordcount::pipeline(&c.input, &c.output))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
        w.stop();
        w.join().unwrap();
    }
    c.wait_done();
    w1.stop();
    w1.join().unwrap();
    c.assert_exact();
    c.cleanup();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn word_count_through_a_repartition_is_exact_under_sigkill() {
    let c = Corpus::load("repartition-kill", 6_000);
    let dir = std::env::temp_dir().join(unique_name("exactly-repartition-kill"));
    let bin = copier_binary().with_file_name("wordcount");
    let spawn = |w: &str| {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--member",
            "--brokers",
            &c.b,
            "--group",
            &c.group,
            "--input",
            &c.input,
            "--output",
            &c.output,
        ])
        .arg("--state-dir")
        .arg(dir.join(w));
        LoggedProcess::spawn(cmd, &format!("{}-{w}", c.group))
    };
    let mut rng = Rng::from_time();
    let mut workers = [Some(spawn("w0")), Some(spawn("w1"))];
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(500 + rng.below(2_000)));
        let victim = rng.below(2) as usize;
        if let Some(p) = workers[victim].take() {
            p.kill();
        }
        workers[victim] = Some(spawn(&format!("w{victim}-{round}")));
    }
    c.wait_done();
    for p in workers.into_iter().flatten() {
        p.terminate_cleanly();
    }
    c.assert_exact();
    c.cleanup();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn committed_repartition_records_are_purged() {
    init_tracing();
    let c = Corpus::load("repartition-purge", 2_000);
    let dir = std::env::temp_dir().join(unique_name("exactly-repartition-purge"));
    let config = Config::new(&c.group, &c.b)
        .with_state_dir(&dir)
        .with_repartition_purge_interval(Duration::from_millis(200));
    let w = Runtime::new(config)
        .spawn(wordcount::pipeline(&c.input, &c.output))
        .unwrap();
    c.wait_done();
    // Once committed, the hop's records are deleted up to the committed offsets.
    let repartition = c.repartition();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed = committed_offsets(&c.b, &c.group, &repartition).unwrap();
        let marks = watermarks(&c.b, &repartition).unwrap();
        let purged = marks.iter().all(|(p, low, _)| {
            committed
                .iter()
                .any(|(cp, o)| cp == p && o.is_some_and(|o| o > 0 && *low >= o))
        });
        if purged {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not purged within 30 s: committed {committed:?}, watermarks {marks:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.stop();
    w.join().unwrap();
    c.assert_exact();
    c.cleanup();
    let _ = std::fs::remove_dir_all(dir);
}
