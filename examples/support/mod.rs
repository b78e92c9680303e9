//! Shared by the word-count examples: how two workers
//! run a pipeline in this process with forced rebalances while a progress bar shows the
//! records processed.
#![allow(dead_code)]

use anyhow::Context as _;
use exactly::framework::StatsSnapshot;
use exactly::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// What [`run_with_rebalances`] measured.
pub struct Run {
    /// From the first worker's start until `done` said so.
    pub elapsed: Duration,
    /// The first worker's counters.
    pub stats: StatsSnapshot,
    /// Forced rebalances (a join, a leave).
    pub rebalances: u32,
}

/// Runs `pipeline` on a first worker; a second joins at 25 % of `records` (records in,
/// over both workers) and leaves at 60 %. Returns once `done()` holds (checked when all
/// records were read) and both workers have stopped cleanly.
pub async fn run_with_rebalances(
    config: impl Fn(&str) -> anyhow::Result<Config>,
    pipeline: impl Fn() -> Pipeline,
    records: u64,
    done: impl Fn() -> anyhow::Result<bool>,
) -> anyhow::Result<Run> {
    let bar = ProgressBar::new(records);
    bar.set_style(ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} records {msg}",
    )?);
    let started = Instant::now();
    let first = Runtime::new(config("w1")?).spawn(pipeline())?;
    let mut second: Option<exactly::Worker> = None;
    let mut rebalances = 0;
    let mut left_behind = 0; // records processed by workers that have stopped
    loop {
        let done_in = left_behind
            + first.stats().records_in
            + second.as_ref().map_or(0, |w| w.stats().records_in);
        bar.set_position(done_in.min(records));
        let fraction = done_in as f64 / records.max(1) as f64;
        if second.is_none() && rebalances == 0 && fraction > 0.25 {
            bar.set_message("(rebalance: a second worker joins)");
            second = Some(Runtime::new(config("w2")?).spawn(pipeline())?);
            rebalances += 1;
        } else if rebalances == 1 && fraction > 0.6 {
            if let Some(w) = second.take() {
                bar.set_message("(rebalance: the second worker leaves)");
                left_behind += w.stats().records_in;
                w.stop();
                w.wait().await.context("the second worker failed")?;
                rebalances += 1;
            }
        }
        if first.is_finished() || (fraction >= 1.0 && done()?) {
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
