//! # wordcount — the flagship: count the words of a book, exactly once
//!
//! With no arguments: starts the local broker (unless `KAFKA_BROKERS` is set), loads the
//! King James Bible shipped in `data/kjv.txt` into an input topic of 4 partitions, and runs
//! two workers of the pipeline below in this process, with forced rebalances in the middle
//! (the second worker joins, later leaves). The output topic gets `word → count so far`
//! (both UTF-8, the count in decimal). Then it reads the output `read_committed`, compares
//! the last count of every word with a direct count of the corpus, prints the top 10 and
//! `verified: N words, 0 wrong`, and exits non-zero on any difference.
//!
//! Guarantee: `exactly_once` — the repartition hop, the counts' changelog and the output
//! commit in the same transactions as the consumed offsets.
//!
//! ```text
//! cargo run --release --example wordcount
//! cargo run --release --example wordcount -- --brokers host:9092 --corpus my.txt
//! cargo run --release --example wordcount -- --member --group G --input IN --output OUT
//! ```
//!
//! With `--member` it is one long-lived worker of the pipeline, like the copier, and takes
//! the copier's flags (`--guarantee`, `--instance-id`, `--commit-interval-ms`,
//! `--session-timeout-ms`, `--metrics-addr`; the rebalance bench runs it so). With
//! `--query-addr 127.0.0.1:8080` it also serves its counts over HTTP
//! (`curl 127.0.0.1:8080/stores/count/keys/the`; a word another member counts answers with
//! a redirect to that member, `curl -L` follows it; docs/state.md).

mod support;

use anyhow::{bail, Context as _};
use clap::Parser;
use exactly::prelude::*;
use exactly_testkit::{self as testkit, Isolation, Loader};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// The word count, a few lines of pipeline (kept in `exactly_testkit::wordcount`, where the
/// tests and benches run the same one):
///
/// ```text
/// Pipeline::from_topic(input, Serde::string())
///     .flat_map(|line: String| words(&line))
///     .key_by("words", |w: &String| w.clone(), Serde::string(), Serde::string())
///     .count("count")
///     .map(|n: u64| n.to_string())
///     .to_topic(output, Serde::string(), Serde::string())
/// ```
fn wordcount(input: &str, output: &str) -> Pipeline {
    testkit::wordcount::pipeline(input, output)
}

#[derive(Parser, Debug)]
#[command(about = "Count the words of a text exactly once, verify the result.")]
struct Args {
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// The text to count, one record per line.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/kjv.txt"))]
    corpus: PathBuf,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Keep the topics and state afterwards.
    #[arg(long)]
    keep: bool,
    /// Run as one long-lived member of group `--group` reading `--input`, writing
    /// `--output`, until SIGTERM/SIGINT (no loading, no verification).
    #[arg(long, requires_all = ["group", "input", "output"])]
    member: bool,
    /// Consumer group / application id (with --member).
    #[arg(long)]
    group: Option<String>,
    /// Input topic (with --member).
    #[arg(long)]
    input: Option<String>,
    /// Output topic (with --member).
    #[arg(long)]
    output: Option<String>,
    /// Local state directory (with --member).
    #[arg(long, default_value = "./exactly-state")]
    state_dir: PathBuf,
    /// exactly_once, at_least_once or auto_commit (with --member).
    #[arg(long, default_value = "exactly_once")]
    guarantee: Guarantee,
    /// Static membership id; also makes the transactional id stable across restarts (with
    /// --member).
    #[arg(long)]
    instance_id: Option<String>,
    /// Commit interval in milliseconds (with --member).
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u64,
    /// Session timeout in milliseconds (with --member).
    #[arg(long, default_value_t = 6_000)]
    session_timeout_ms: u64,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9000 (with --member).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Answer only requests with `Authorization: Bearer <token>` on --metrics-addr, the
    /// token read from this file.
    #[arg(long, requires = "metrics_addr")]
    metrics_token_file: Option<std::path::PathBuf>,
    /// Keep warm standby copies of this many other members' count partitions (with
    /// --member; docs/state.md).
    #[arg(long, default_value_t = 0)]
    standby_replicas: u32,
    /// Serve the committed counts over HTTP on this address, e.g. 127.0.0.1:8080:
    /// `GET /stores/count/keys/{word}` (with --member).
    #[arg(long)]
    query_addr: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing();
    let args = Args::parse();
    let brokers = support::brokers(&args.brokers)?;
    if args.member {
        return member(&args, &brokers).await;
    }
    let text = std::fs::read_to_string(&args.corpus)
        .with_context(|| format!("reading {}", args.corpus.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let expected = testkit::wordcount::expected_counts(lines.iter().copied());
    let total_words: u64 = expected.values().sum();

    let app = testkit::unique_name("wordcount");
    let input = format!("{app}-lines");
    let output = format!("{app}-counts");
    testkit::create_topic(&brokers, &input, args.partitions)?;
    testkit::create_topic(&brokers, &output, args.partitions)?;
    let n = args.partitions;
    Loader::new(&brokers)?.send(
        &input,
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (Some(i as i32 % n), None::<&str>, *l)),
    )?;
    println!(
        "loaded {} lines ({total_words} words, {} distinct) from {} into {input} on {brokers}",
        lines.len(),
        expected.len(),
        args.corpus.display()
    );

    let state_dir = std::env::temp_dir().join("exactly-wordcount").join(&app);
    let repartition = format!("{app}-words-repartition");
    let run = support::run_with_rebalances(
        |worker| {
            Ok(Config::new(&app, &brokers)
                .with_state_dir(state_dir.join(worker))
                .with_env()?)
        },
        || wordcount(&input, &output),
        (brokers.as_str(), app.as_str(), input.as_str()),
        lines.len() as u64,
        || {
            Ok(testkit::app_caught_up(
                &brokers,
                &app,
                &wordcount(&input, &output),
            )?)
        },
    )
    .await?;
    println!(
        "counted {total_words} words in {:.1} s ({:.0} words/s; {} forced rebalances, {} transactions, {} aborted on the first worker)",
        run.elapsed.as_secs_f64(),
        total_words as f64 / run.elapsed.as_secs_f64(),
        run.rebalances,
        run.stats.commits,
        run.stats.aborts
    );

    let out = testkit::read_to_end(
        &brokers,
        &output,
        Isolation::ReadCommitted,
        Duration::from_secs(120),
    )?;
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in &out {
        let word = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string();
        let n: u64 = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).parse()?;
        last.insert(word, n);
    }
    let mut top: Vec<(&String, &u64)> = last.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("top 10:");
    for (w, n) in top.iter().take(10) {
        println!("  {w:>8} {n}");
    }
    let wrong: Vec<(&String, u64, Option<&u64>)> = expected
        .iter()
        .filter(|(w, n)| last.get(*w) != Some(n))
        .map(|(w, n)| (w, *n, last.get(w)))
        .collect();
    let extra = last.keys().filter(|w| !expected.contains_key(*w)).count();
    if !args.keep {
        let changelog = exactly::framework::state::changelog::topic_name(&app, "count", "counts");
        testkit::delete_topic(&brokers, &[&input, &output, &repartition, &changelog])?;
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    println!(
        "verified: {} words, {} wrong",
        expected.len(),
        wrong.len() + extra
    );
    if !wrong.is_empty() || extra > 0 {
        for (w, want, got) in wrong.iter().take(10) {
            eprintln!("  {w}: expected {want}, output says {got:?}");
        }
        bail!("the output does not match the corpus");
    }
    Ok(())
}

/// `--member`: one worker of the word count until SIGTERM/SIGINT.
async fn member(args: &Args, brokers: &str) -> anyhow::Result<()> {
    let (group, input, output) = (
        args.group.clone().unwrap_or_default(),
        args.input.clone().unwrap_or_default(),
        args.output.clone().unwrap_or_default(),
    );
    if let Some(addr) = args.metrics_addr {
        let mut endpoint = exactly::framework::observability::MetricsEndpoint::new(addr);
        if let Some(file) = &args.metrics_token_file {
            endpoint = endpoint.with_bearer_token(exactly::Secret::file(file));
        }
        endpoint.install()?;
    }
    let mut config = Config::new(&group, brokers)
        .with_state_dir(&args.state_dir)
        .with_guarantee(args.guarantee)
        .with_commit_interval(Duration::from_millis(args.commit_interval_ms))
        .with_session_timeout(Duration::from_millis(args.session_timeout_ms))
        .with_env()?;
    if let Some(id) = &args.instance_id {
        config = config.with_group_instance_id(id);
    }
    if let Some(addr) = &args.query_addr {
        config = config.with_query_server(addr);
    }
    if args.standby_replicas > 0 {
        config = config.with_standby_replicas(args.standby_replicas);
    }
    Runtime::new(config).run(wordcount(&input, &output)).await?;
    Ok(())
}
