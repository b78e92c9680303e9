//! Shared by the word-count examples: how two workers
//! run a pipeline in this process with forced rebalances while a progress bar shows the
//! records processed.
#![allow(dead_code)]

use anyhow::Context as _;
use exactly::framework::StatsSnapshot;
use exactly::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// Logs to stderr, as `RUST_LOG` says (default: errors only, librdkafka's lines off).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,librdkafka=off".into()),
        )
        .init();
}

/// The brokers: `--brokers` if given, else `KAFKA_BROKERS`, else the local broker (started
/// if needed).
pub fn brokers(arg: &Option<String>) -> anyhow::Result<String> {
    Ok(match arg {
        Some(b) => b.clone(),
        None => exactly_testkit::bootstrap_servers()?,
    })
}

/// What [`run_with_rebalances`] measured.
pub struct Run {
    /// From the first worker's start until `done` said so.
    pub elapsed: Duration,
    /// The first worker's counters.
    pub stats: StatsSnapshot,
    /// Forced rebalances (a join, a leave).
    pub rebalances: u32,
}

/// Runs `pipeline` on a first worker; a second joins when the group has committed 25 % of
/// the `lines` of `input` and leaves at 60 % (once it owns partitions). Returns once `done()` holds and both workers
/// have stopped cleanly. Progress is the group's committed offsets of `input` (records
/// after the first stage are not counted: a pre-aggregating hop carries far fewer).
pub async fn run_with_rebalances(
    config: impl Fn(&str) -> anyhow::Result<Config>,
    pipeline: impl Fn() -> Pipeline,
    (brokers, group, input): (&str, &str, &str),
    lines: u64,
    done: impl Fn() -> anyhow::Result<bool>,
) -> anyhow::Result<Run> {
    let bar = ProgressBar::new(lines);
    bar.set_style(ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} input lines committed {msg}",
    )?);
    let started = Instant::now();
    let first = Runtime::new(config("w1")?).spawn(pipeline())?;
    let mut second: Option<exactly::Worker> = None;
    let mut joined_at = Instant::now();
    let mut rebalances = 0;
    loop {
        let committed: u64 = exactly_testkit::committed_offsets(brokers, group, input)?
            .iter()
            .map(|(_, o)| o.unwrap_or(0).max(0) as u64)
            .sum();
        bar.set_position(committed.min(lines));
        let fraction = committed as f64 / lines.max(1) as f64;
        if second.is_none() && rebalances == 0 && fraction > 0.25 {
            bar.set_message("(rebalance: a second worker joins)");
            second = Some(Runtime::new(config("w2")?).spawn(pipeline())?);
            joined_at = Instant::now();
            rebalances += 1;
        } else if rebalances == 1
            && fraction > 0.6
            // It leaves once it owns partitions (a real second rebalance), however fast
            // the input went.
            && second.as_ref().is_some_and(|w| {
                w.stats().partitions > 0 || joined_at.elapsed() > Duration::from_secs(10)
            })
        {
            if let Some(w) = second.take() {
                bar.set_message("(rebalance: the second worker leaves)");
                w.stop();
                w.wait().await.context("the second worker failed")?;
                rebalances += 1;
            }
        }
        if first.is_finished() || (fraction >= 1.0 && rebalances == 2 && done()?) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let stats = first.stats();
    first.stop();
    first.wait().await.context("the worker failed")?;
    if let Some(w) = second {
        w.stop();
        w.wait().await?;
    }
    Ok(Run {
        elapsed,
        stats,
        rebalances,
    })
}
