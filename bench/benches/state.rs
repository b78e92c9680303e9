//! State benchmark: `cargo bench -p exactly-bench --bench state`.
//!
//! On one broker and one data set, in one run:
//! 1. throughput of the stateless copier and of a stateful keyed count (same input), and
//!    their ratio;
//! 2. restore from the changelog: a worker with an empty state dir takes the partitions
//!    over; restored records / restore time = the restore rate;
//! 3. resume from a matching local checkpoint: the same worker comes back; restore time is
//!    the time to resume a partition (no replay).
//!
//! Writes `target/bench/state.json` and `target/bench/state.md`.

use clap::Parser;
use exactly::prelude::*;
use exactly_testkit::{self as testkit, Loader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Input records.
    #[arg(long, default_value_t = 400_000)]
    records: u64,
    /// Distinct keys (the changelog holds about this many records per cycle touched).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Input partitions.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, hide = true)]
    bench: bool,
}

fn wait_caught_up(brokers: &str, group: &str, topic: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !testkit::caught_up(brokers, group, topic)? {
        anyhow::ensure!(Instant::now() < deadline, "{group} did not finish {topic}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn run(
    brokers: &str,
    group: &str,
    dir: &PathBuf,
    pipeline: Pipeline,
    input: &str,
) -> anyhow::Result<(Duration, exactly::framework::StatsSnapshot)> {
    let started = Instant::now();
    let w = Runtime::new(Config::new(group, brokers).with_state_dir(dir)).spawn(pipeline)?;
    wait_caught_up(brokers, group, input)?;
    let took = started.elapsed();
    let stats = w.stats();
    w.stop();
    w.join()?;
    Ok((took, stats))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let b = testkit::bootstrap_servers()?;
    let p = args.partitions;
    let input = testkit::unique_name("bench-state-in");
    let copy_out = testkit::unique_name("bench-state-copy");
    let count_out = testkit::unique_name("bench-state-count");
    for t in [&input, &copy_out, &count_out] {
        testkit::create_topic(&b, t, p)?;
    }
    let keys = args.keys;
    Loader::new(&b)?.send(
        &input,
        (0..args.records).map(|i| {
            (
                Some((i % p as u64) as i32),
                Some(format!("k{}", (i / p as u64) % keys)),
                "1",
            )
        }),
    )?;
    eprintln!(
        "loaded {} records ({} keys) into {p} partitions",
        args.records, keys
    );
    let dir = std::env::temp_dir().join(testkit::unique_name("exactly-bench-state"));

    let copy_group = testkit::unique_name("bench-state-copy");
    let (copy_time, _) = run(
        &b,
        &copy_group,
        &dir.join("copy"),
        Pipeline::copy(&input, &copy_out),
        &input,
    )?;
    let count_group = testkit::unique_name("bench-state-count");
    let count = || {
        Pipeline::from_topic_with_key(&input, Serde::string(), Serde::string())
            .count("count")
            .map(|n: u64| n.to_string())
            .to_topic(&count_out, Serde::string(), Serde::string())
    };
    let (count_time, count_stats) = run(&b, &count_group, &dir.join("a"), count(), &input)?;
    // Where the keyed count's time goes: the commit cycles (changelog and output records
    // delivered, the transaction committed, the overlay applied to sled) stop processing.
    let commit_share = count_stats.commit_time.as_secs_f64() / count_time.as_secs_f64();
    let commit_mean_ms =
        count_stats.commit_time.as_secs_f64() * 1000.0 / count_stats.commits.max(1) as f64;
    let copy_rate = args.records as f64 / copy_time.as_secs_f64();
    let count_rate = args.records as f64 / count_time.as_secs_f64();

    // Restore: one more record per partition makes a fresh worker open every task.
    let nudge = |loader: &Loader| {
        loader.send(
            &input,
            (0..p).map(|i| (Some(i), Some(format!("k{i}")), "1")),
        )
    };
    let loader = Loader::new(&b)?;
    nudge(&loader)?;
    let (_, fresh) = run(&b, &count_group, &dir.join("b"), count(), &input)?;
    nudge(&loader)?;
    let (_, back) = run(&b, &count_group, &dir.join("b"), count(), &input)?;
    let restore_rate = fresh.restored_records as f64 / fresh.restore_time.as_secs_f64();
    let resume_ms = back.restore_time.as_secs_f64() * 1000.0 / back.restores.max(1) as f64;

    let json = serde_json::json!({
        "records": args.records,
        "keys": keys,
        "partitions": p,
        "copy_records_per_sec": copy_rate,
        "count_records_per_sec": count_rate,
        "count_over_copy": count_rate / copy_rate,
        "count_commits": count_stats.commits,
        "count_commit_ms_mean": commit_mean_ms,
        "count_commit_share": commit_share,
        "restore_records": fresh.restored_records,
        "restore_time_ms": fresh.restore_time.as_secs_f64() * 1000.0,
        "restore_records_per_sec": restore_rate,
        "resume_matching_checkpoint_ms_per_partition": resume_ms,
        "resume_replayed_records": back.restored_records,
    });
    let md = format!(
        "| measure | value |\n|---|---|\n\
         | copier (stateless), records/s | {copy_rate:.0} |\n\
         | keyed count (stateful, changelog), records/s | {count_rate:.0} |\n\
         | stateful / stateless | {:.2} |\n\
         | keyed count: commit cycles, mean commit, share of the run committing | {} cycles, {commit_mean_ms:.1} ms, {:.0} % |\n\
         | restore from the changelog | {} records in {:.0} ms = {restore_rate:.0} records/s |\n\
         | resume from a matching local checkpoint | {resume_ms:.1} ms per partition, {} records replayed |\n",
        count_rate / copy_rate,
        count_stats.commits,
        commit_share * 100.0,
        fresh.restored_records,
        fresh.restore_time.as_secs_f64() * 1000.0,
        back.restored_records,
    );
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("state.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(out.join("state.md"), &md)?;
    println!("{md}");
    let changelog =
        exactly::framework::state::changelog::topic_name(&count_group, "count", "counts");
    testkit::delete_topic(&b, &[&input, &copy_out, &count_out, &changelog])?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
