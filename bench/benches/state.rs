//! State benchmark: `cargo bench -p exactly-bench --bench state`.
//!
//! On one broker and one data set, in one run:
//! 1. throughput of the stateless copier and of a stateful keyed count (same input), and
//!    their ratio;
//! 2. restore from the changelog: a worker with an empty state dir takes the partitions
//!    over; restored records / restore time = the restore rate;
//! 3. resume from a matching local checkpoint: the same worker comes back; restore time is
//!    the time to resume a partition (no replay) — also for a count behind a repartition
//!    hop, whose input is written in transactions (a commit marker follows each cycle);
//! 4. failover: two workers count `--failover-keys` distinct keys (one a child process), the
//!    child is SIGKILLed, and the survivor takes its partitions over — without standbys,
//!    then with `standby_replicas = 1`: the records it replays, the time it takes to open
//!    the moved states, and the time from the kill until the group has processed a record
//!    on every partition (session timeout included).
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
    /// Distinct keys of the failover phase (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    failover_keys: u64,
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as the failover phase's child member of this group.
    #[arg(long, hide = true)]
    member: Option<String>,
    #[arg(long, hide = true)]
    member_input: Option<String>,
    #[arg(long, hide = true)]
    member_output: Option<String>,
    #[arg(long, hide = true)]
    member_state_dir: Option<PathBuf>,
    #[arg(long, hide = true, default_value_t = 0)]
    member_standbys: u32,
}

/// The failover phase's session timeout: how long the group takes to notice the kill.
const FAILOVER_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The keyed count the failover phase runs.
fn failover_count(input: &str, output: &str) -> Pipeline {
    Pipeline::from_topic_with_key(input, Serde::string(), Serde::string())
        .count("count")
        .map(|n: u64| n.to_string())
        .to_topic(output, Serde::string(), Serde::string())
}

fn failover_config(brokers: &str, group: &str, dir: &std::path::Path, standbys: u32) -> Config {
    Config::new(group, brokers)
        .with_state_dir(dir)
        .with_standby_replicas(standbys)
        .with_session_timeout(FAILOVER_SESSION_TIMEOUT)
}

/// What one failover measured.
struct Failover {
    changelog_records: i64,
    replayed: u64,
    open_moved: Duration,
    kill_to_processed: Duration,
    /// From the survivor's new assignment until every partition has a record processed.
    assigned_to_processed: Duration,
}

/// Two members count the same input (the second a child process), the child is
/// SIGKILLed, a record per partition follows; measures the survivor's takeover.
fn failover(
    brokers: &str,
    input: &str,
    partitions: i32,
    standbys: u32,
    dir: &std::path::Path,
) -> anyhow::Result<Failover> {
    let group = testkit::unique_name(&format!("bench-failover-{standbys}"));
    let output = testkit::unique_name("bench-failover-out");
    testkit::create_topic(brokers, &output, partitions)?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--member",
            &group,
            "--member-input",
            input,
            "--member-output",
            &output,
        ])
        .arg("--member-state-dir")
        .arg(dir.join(format!("victim-{standbys}")))
        .args(["--member-standbys", &standbys.to_string()])
        .spawn()?;
    let survivor = Runtime::new(failover_config(
        brokers,
        &group,
        &dir.join(format!("survivor-{standbys}")),
        standbys,
    ))
    .spawn(failover_count(input, &output))?;
    // Both hold partitions (the survivor not all of them) and the input is processed.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = survivor.stats();
        let settled = s.partitions > 0 && s.partitions < partitions as u64;
        let warm = standbys == 0 || (s.standby_partitions > 0 && s.standby_lag == 0);
        if settled && warm && testkit::caught_up(brokers, &group, input)? {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "failover: the two members never settled: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let changelog = exactly::framework::state::changelog::topic_name(&group, "count", "counts");
    let changelog_records: i64 = testkit::watermarks(brokers, &changelog)?
        .iter()
        .map(|(_, _, high)| high)
        .sum();
    let before = survivor.stats();
    // SAFETY: kill(2) on the child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let killed = Instant::now();
    let _ = child.wait();
    Loader::new(brokers)?.send(
        input,
        (0..partitions).map(|i| (Some(i), Some(format!("after-kill-{i}")), "1")),
    )?;
    // The group gives the survivor the killed member's partitions once its session ends.
    while survivor.stats().partitions <= before.partitions {
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(120),
            "failover: no reassignment"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let assigned = Instant::now();
    wait_caught_up(brokers, &group, input)?;
    let kill_to_processed = killed.elapsed();
    let assigned_to_processed = assigned.elapsed();
    let after = survivor.stats();
    survivor.stop();
    survivor.join()?;
    testkit::delete_topic(brokers, &[&output, &changelog])?;
    Ok(Failover {
        changelog_records,
        replayed: after.restored_records - before.restored_records,
        open_moved: after.restore_time - before.restore_time,
        kill_to_processed,
        assigned_to_processed,
    })
}

/// The failover phase's child: a member of the count until killed.
fn member(args: &Args) -> anyhow::Result<()> {
    let (Some(group), Some(input), Some(output), Some(dir)) = (
        &args.member,
        &args.member_input,
        &args.member_output,
        &args.member_state_dir,
    ) else {
        anyhow::bail!("--member needs --member-input, --member-output and --member-state-dir");
    };
    let b = testkit::bootstrap_servers()?;
    let config = failover_config(&b, group, dir, args.member_standbys);
    let worker = Runtime::new(config).spawn(failover_count(input, output))?;
    worker.join()?;
    Ok(())
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
    run_through(brokers, group, dir, pipeline, &[input])
}

/// As [`run`], until the group has committed the end of every topic of `inputs` (the
/// input, then the repartition topics).
fn run_through(
    brokers: &str,
    group: &str,
    dir: &PathBuf,
    pipeline: Pipeline,
    inputs: &[&str],
) -> anyhow::Result<(Duration, exactly::framework::StatsSnapshot)> {
    let started = Instant::now();
    let w = Runtime::new(Config::new(group, brokers).with_state_dir(dir)).spawn(pipeline)?;
    for input in inputs {
        wait_caught_up(brokers, group, input)?;
    }
    let took = started.elapsed();
    let stats = w.stats();
    w.stop();
    w.join()?;
    Ok((took, stats))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.member.is_some() {
        return member(&args);
    }
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
    // delivered, the transaction committed, the overlay applied to the store) stop processing.
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

    // Resume with a transactional input: the count behind a repartition hop reads the
    // internal topic, written in transactions, so the first offset it is delivered after a
    // restart lies past a commit marker; its checkpoint must still match.
    let hop_group = testkit::unique_name("bench-state-hop");
    let hop_topic = format!("{hop_group}-hop-repartition");
    let hop_count = || {
        Pipeline::from_topic_with_key(&input, Serde::string(), Serde::string())
            .repartition("hop", Serde::string(), Serde::string())
            .count("count")
            .map(|n: u64| n.to_string())
            .to_topic(&count_out, Serde::string(), Serde::string())
    };
    let hop_dir = dir.join("hop");
    run_through(&b, &hop_group, &hop_dir, hop_count(), &[&input, &hop_topic])?;
    nudge(&loader)?;
    let (_, hop_back) = run_through(&b, &hop_group, &hop_dir, hop_count(), &[&input, &hop_topic])?;
    let hop_resume_ms =
        hop_back.restore_time.as_secs_f64() * 1000.0 / hop_back.restores.max(1) as f64;

    // Failover: a member killed, the survivor takes over, without and with standbys.
    let failovers = if args.failover_keys > 0 {
        let failover_in = testkit::unique_name("bench-failover-in");
        testkit::create_topic(&b, &failover_in, p)?;
        Loader::new(&b)?.send(
            &failover_in,
            (0..args.failover_keys)
                .map(|i| (Some((i % p as u64) as i32), Some(format!("key-{i}")), "1")),
        )?;
        eprintln!("failover: loaded {} keys", args.failover_keys);
        let cold = failover(&b, &failover_in, p, 0, &dir)?;
        eprintln!(
            "failover without standbys: {} records replayed, {:?}",
            cold.replayed, cold.open_moved
        );
        let warm = failover(&b, &failover_in, p, 1, &dir)?;
        eprintln!(
            "failover with standbys: {} records replayed, {:?}",
            warm.replayed, warm.open_moved
        );
        testkit::delete_topic(&b, &[&failover_in])?;
        Some((cold, warm))
    } else {
        None
    };
    let failover_json = failovers.as_ref().map(|(cold, warm)| {
        let one = |f: &Failover| {
            serde_json::json!({
                "changelog_records": f.changelog_records,
                "replayed_records": f.replayed,
                "open_moved_states_ms": f.open_moved.as_secs_f64() * 1000.0,
                "kill_to_processed_ms": f.kill_to_processed.as_secs_f64() * 1000.0,
                "assigned_to_processed_ms": f.assigned_to_processed.as_secs_f64() * 1000.0,
            })
        };
        serde_json::json!({
            "keys": args.failover_keys,
            "session_timeout_ms": FAILOVER_SESSION_TIMEOUT.as_millis() as u64,
            "without_standbys": one(cold),
            "with_standbys": one(warm),
            "open_moved_speedup": cold.open_moved.as_secs_f64() / warm.open_moved.as_secs_f64().max(1e-6),
        })
    });
    let json = serde_json::json!({
        "failover": failover_json,
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
        "resume_transactional_input_ms_per_partition": hop_resume_ms,
        "resume_transactional_input_restores": hop_back.restores,
        "resume_transactional_input_replayed_records": hop_back.restored_records,
    });
    let md = format!(
        "| measure | value |\n|---|---|\n\
         | copier (stateless), records/s | {copy_rate:.0} |\n\
         | keyed count (stateful, changelog), records/s | {count_rate:.0} |\n\
         | stateful / stateless | {:.2} |\n\
         | keyed count: commit cycles, mean commit, share of the run committing | {} cycles, {commit_mean_ms:.1} ms, {:.0} % |\n\
         | restore from the changelog | {} records in {:.0} ms = {restore_rate:.0} records/s |\n\
         | resume from a matching local checkpoint | {resume_ms:.1} ms per partition, {} records replayed |\n\
         | resume, transactional input (a count behind a repartition hop) | {hop_resume_ms:.1} ms per partition ({} partitions), {} records replayed |\n",
        count_rate / copy_rate,
        count_stats.commits,
        commit_share * 100.0,
        fresh.restored_records,
        fresh.restore_time.as_secs_f64() * 1000.0,
        back.restored_records,
        hop_back.restores,
        hop_back.restored_records,
    );
    let md = match &failovers {
        Some((cold, warm)) => {
            let row = |name: &str, f: &Failover| {
                format!(
                    "| failover ({} keys), {name} | {} of {} changelog records replayed; moved states open in {:.0} ms; reassignment to every partition processed {:.2} s; kill to every partition processed {:.1} s |\n",
                    args.failover_keys,
                    f.replayed,
                    f.changelog_records,
                    f.open_moved.as_secs_f64() * 1000.0,
                    f.assigned_to_processed.as_secs_f64(),
                    f.kill_to_processed.as_secs_f64(),
                )
            };
            format!(
                "{md}{}{}| failover: opening the moved states, without / with standbys | {:.1}x faster (session timeout {} s in both) |\n",
                row("without standbys", cold),
                row("with standbys", warm),
                cold.open_moved.as_secs_f64() / warm.open_moved.as_secs_f64().max(1e-6),
                FAILOVER_SESSION_TIMEOUT.as_secs(),
            )
        }
        None => md,
    };
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("state.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(out.join("state.md"), &md)?;
    println!("{md}");
    let changelog =
        exactly::framework::state::changelog::topic_name(&count_group, "count", "counts");
    let hop_changelog =
        exactly::framework::state::changelog::topic_name(&hop_group, "count", "counts");
    testkit::delete_topic(
        &b,
        &[
            &input,
            &copy_out,
            &count_out,
            &changelog,
            &hop_topic,
            &hop_changelog,
        ],
    )?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
