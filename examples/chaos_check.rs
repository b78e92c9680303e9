//! # chaos_check — prove a pipeline under SIGKILLs and rebalances
//!
//! Runs `testkit::chaos::check` on the word count: worker processes (this program started
//! again as workers) under 3 SIGKILLs and 2 joins while the input arrives, the committed
//! output compared with `TestDriver`'s for the same input. Prints the report and exits
//! non-zero unless nothing was lost, duplicated or out of order. In your own crate, call
//! `chaos::check` from a `#[test]` (see `tests/chaos.rs`).
//!
//! ```text
//! cargo run --release --example chaos_check
//! ```

use exactly_testkit::chaos::{self, Chaos};
use exactly_testkit::wordcount;

fn main() -> anyhow::Result<()> {
    let input: Vec<(Option<Vec<u8>>, Vec<u8>)> = wordcount::KJV
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6_000)
        .map(|l| (None, l.as_bytes().to_vec()))
        .collect();
    // In a worker process this call runs the worker and never returns.
    let report = chaos::check(
        "chaos_check",
        wordcount::pipeline_every_update,
        &input,
        Chaos::default(),
    )?;
    println!("{report}");
    if !report.is_exact() {
        anyhow::bail!("the word count lost, duplicated or reordered records under chaos");
    }
    println!(
        "exact under chaos: {} kills, {} joins",
        report.kills, report.joins
    );
    Ok(())
}
