//! # copier — copy a topic exactly once
//!
//! Copies every record of `--input` to the same partition number of `--output`, with key,
//! value (nulls included), timestamp and headers unchanged, as one long-running member of
//! consumer group `--group`, until SIGTERM or SIGINT; then it commits what it has, leaves
//! the group, prints how many records it copied and exits 0.
//!
//! Guarantee: `exactly_once` by default (`--guarantee at_least_once|auto_commit` to compare).
//! Run the same command several times and Kafka spreads the partitions over the copies.
//!
//! ```text
//! cargo run --release --example copier -- --brokers B --group G --input IN --output OUT
//! cargo run --release --example copier -- --demo      # local broker, sample data, verified
//! ```

use anyhow::{bail, Context as _};
use clap::Parser;
use exactly::prelude::*;
use exactly_testkit as testkit;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Copy a Kafka topic exactly once (a three-line exactly pipeline).")]
struct Args {
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group (also the application id and transactional id prefix).
    #[arg(long, default_value = "copier")]
    group: String,
    /// Input topic.
    #[arg(long, required_unless_present = "demo")]
    input: Option<String>,
    /// Output topic (as many partitions as the input).
    #[arg(long, required_unless_present = "demo")]
    output: Option<String>,
    /// exactly_once, at_least_once or auto_commit.
    #[arg(long, default_value = "exactly_once")]
    guarantee: Guarantee,
    /// Static membership id; also makes the transactional id stable across restarts.
    #[arg(long)]
    instance_id: Option<String>,
    /// Commit interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u64,
    /// Session timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9000).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Answer only requests with `Authorization: Bearer <token>` on --metrics-addr, the
    /// token read from this file.
    #[arg(long, requires = "metrics_addr")]
    metrics_token_file: Option<std::path::PathBuf>,
    /// Start the local broker, load sample records, copy them, verify, and exit.
    #[arg(long)]
    demo: bool,
    /// Records in the demo.
    #[arg(long, default_value_t = 100_000)]
    demo_records: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    if let Some(addr) = args.metrics_addr {
        let mut endpoint = exactly::framework::observability::MetricsEndpoint::new(addr);
        if let Some(file) = &args.metrics_token_file {
            endpoint = endpoint.with_bearer_token(exactly::Secret::file(file));
        }
        endpoint.install()?;
    }
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None => testkit::bootstrap_servers()?,
    };
    if args.demo {
        return demo(&args, &brokers).await;
    }
    // Installed before the worker starts: an early SIGTERM still stops it cleanly.
    let shutdown = exactly::framework::runtime::shutdown_signal();
    let (input, output) = (
        args.input.clone().unwrap_or_default(),
        args.output.clone().unwrap_or_default(),
    );
    let config = config(&args, &brokers)?;
    if config.workers > 1 {
        // EXACTLY_WORKERS=n: n workers in this process, all members of the group.
        let workers = config.workers;
        Runtime::new(config)
            .run_until(Pipeline::copy(&input, &output), shutdown)
            .await?;
        println!("{workers} workers copied from {input} to {output}");
        return Ok(());
    }
    let worker = Runtime::new(config).spawn(Pipeline::copy(&input, &output))?;
    let stats = worker.wait_until(shutdown).await?;
    println!(
        "copied {} records from {input} to {output}",
        stats.records_out
    );
    Ok(())
}

fn config(args: &Args, brokers: &str) -> anyhow::Result<Config> {
    let mut config = Config::new(&args.group, brokers)
        .with_guarantee(args.guarantee)
        .with_commit_interval(Duration::from_millis(args.commit_interval_ms))
        .with_session_timeout(Duration::from_millis(args.session_timeout_ms))
        .with_env()?;
    if let Some(id) = &args.instance_id {
        config = config.with_group_instance_id(id);
    }
    Ok(config)
}

async fn demo(args: &Args, brokers: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let input = testkit::unique_name("copier-demo-in");
    let output = testkit::unique_name("copier-demo-out");
    let group = testkit::unique_name("copier-demo");
    testkit::create_topic(brokers, &input, 4)?;
    testkit::create_topic(brokers, &output, 4)?;
    let n = args.demo_records;
    let loaded = testkit::produce(
        brokers,
        &input,
        (0..n).map(|i| {
            (
                Some((i % 4) as i32),
                Some(format!("k{i}")),
                format!("record {i}"),
            )
        }),
    )?;
    println!("loaded {loaded} records into {input} (4 partitions) on {brokers}");

    let config = Config::new(&group, brokers)
        .with_guarantee(args.guarantee)
        .with_env()?;
    let copy_started = Instant::now();
    let worker = Runtime::new(config).spawn(Pipeline::copy(&input, &output))?;
    // Done when the group has committed everything in the input.
    while !worker.is_finished() && !testkit::caught_up(brokers, &group, &input)? {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = copy_started.elapsed();
    let stats = worker.stats();
    worker.stop();
    worker.wait().await.context("the copier failed")?;

    let copied = testkit::read_to_end(
        brokers,
        &output,
        testkit::Isolation::ReadCommitted,
        Duration::from_secs(60),
    )?;
    let mut want: Vec<(i32, Vec<u8>)> = (0..n)
        .map(|i| ((i % 4) as i32, format!("record {i}").into_bytes()))
        .collect();
    let mut got: Vec<(i32, Vec<u8>)> = copied
        .iter()
        .map(|r| (r.partition, r.value.clone().unwrap_or_default()))
        .collect();
    want.sort();
    got.sort();
    println!(
        "copied {} records in {:.2} s ({:.0} records/s, {} transactions taking {:.2} s to commit, {} aborted)",
        copied.len(),
        elapsed.as_secs_f64(),
        copied.len() as f64 / elapsed.as_secs_f64(),
        stats.commits,
        stats.commit_time.as_secs_f64(),
        stats.aborts
    );
    testkit::delete_topic(brokers, &[&input, &output])?;
    if got != want {
        bail!(
            "verification failed: expected {} records, read_committed shows {}",
            want.len(),
            got.len()
        );
    }
    println!(
        "verified: {} records, 0 lost, 0 duplicated (total {:.1} s)",
        n,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
