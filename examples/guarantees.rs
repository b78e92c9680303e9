//! # guarantees — the three commit types under the same crashes and rebalances
//!
//! Runs one pipeline (a keyed copy: every input record to the output once) three times —
//! under `AutoCommit`, `AtLeastOnce` and `ExactlyOnce` — each on worker processes (this
//! program started again as workers) that are SIGKILLed 3 times and joined twice by others
//! while 30 000 records arrive (`testkit::chaos::check`). Then it reads each output
//! `read_committed`, compares it record by record with what the pipeline must write, and
//! prints one table: mode, records in, records out, lost, duplicated — measured, never
//! assumed. Exits non-zero unless ExactlyOnce lost and duplicated nothing.
//!
//! ```text
//! cargo run --release --example guarantees
//! ```

use exactly::prelude::*;
use exactly_testkit::chaos::{self, Chaos, ChaosReport};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// Every input record to the output, key and value unchanged.
fn keyed_copy(input: &str, output: &str) -> Pipeline {
    Pipeline::from_topic_with_key(input, Serde::string(), Serde::string()).to_topic(
        output,
        Serde::string(),
        Serde::string(),
    )
}

fn main() -> anyhow::Result<()> {
    // In a worker process this runs the worker and never returns.
    chaos::run_if_worker(keyed_copy);
    let input: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..30_000)
        .map(|i| {
            (
                Some(format!("k{}", i % 64).into_bytes()),
                format!("v{i}").into_bytes(),
            )
        })
        .collect();
    let mut rows: Vec<(Guarantee, ChaosReport)> = Vec::new();
    for guarantee in [
        Guarantee::AutoCommit,
        Guarantee::AtLeastOnce,
        Guarantee::ExactlyOnce,
    ] {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
        bar.set_message(format!(
            "{guarantee:?}: 3 SIGKILLs and 2 joins while 30 000 records arrive"
        ));
        bar.enable_steady_tick(Duration::from_millis(200));
        let chaos = Chaos {
            guarantee,
            ..Chaos::default()
        };
        let report = chaos::check("guarantees", keyed_copy, &input, chaos)?;
        bar.finish_with_message(format!(
            "{guarantee:?}: done in {:.1} s",
            report.elapsed.as_secs_f64()
        ));
        rows.push((guarantee, report));
    }
    println!("| mode | records in | records out | lost | duplicated | SIGKILLs | joins |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (g, r) in &rows {
        println!(
            "| {g:?} | {} | {} | {} | {} | {} | {} |",
            r.input, r.read, r.lost_total, r.duplicated_total, r.kills, r.joins
        );
    }
    let (_, exact) = rows.last().expect("three runs");
    if !exact.is_exact() {
        anyhow::bail!("ExactlyOnce lost or duplicated records: {exact}");
    }
    println!("ExactlyOnce: 0 lost, 0 duplicated");
    Ok(())
}
