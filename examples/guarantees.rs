//! # guarantees — the three commit types under the same crashes and rebalances
//!
//! Runs one pipeline (a keyed copy: every input record to the output once) three times —
//! under `AutoCommit`, `AtLeastOnce` and `ExactlyOnce` — each on worker processes (this
//! program started again as workers) that are SIGKILLed 3 times and joined twice by others
//! while 30 000 records arrive (`testkit::chaos::check`). Then it reads each output
//! `read_committed`, compares it record by record with what the pipeline must write, and
//! prints one table: mode, records in, records out, lost, duplicated — measured, never
//! assumed — and draws `target/guarantees.png`: output records per input record over the
//! input, one panel per mode. Exits non-zero unless ExactlyOnce lost and duplicated nothing.
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
    let png = std::path::Path::new("target").join("guarantees.png");
    plot(&rows, input.len(), &png)?;
    println!("plot: {}", png.display());
    Ok(())
}

/// Input records per bin of the plot.
const BIN: usize = 300;

/// One panel per mode: output records per input record, over the input (bins of [`BIN`]):
/// 1 is exact, above it duplicated, below it lost.
fn plot(
    rows: &[(Guarantee, ChaosReport)],
    inputs: usize,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (960, 50 + 220 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(50);
    top.titled(
        "output records per input record (the same SIGKILLs and joins; 1 = exactly once)",
        ("sans-serif", 18),
    )?;
    let bins = inputs.div_ceil(BIN);
    let series: Vec<Vec<f64>> = rows
        .iter()
        .map(|(_, r)| {
            let mut per_bin = vec![0usize; bins];
            for (_, v) in &r.committed {
                if let Some(i) = v.strip_prefix('v').and_then(|i| i.parse::<usize>().ok()) {
                    per_bin[(i / BIN).min(bins - 1)] += 1;
                }
            }
            per_bin.iter().map(|n| *n as f64 / BIN as f64).collect()
        })
        .collect();
    let y_max = series.iter().flatten().fold(2.0f64, |a, b| a.max(*b)) * 1.1;
    let colors = [
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
    ];
    for (((g, r), ys), (area, color)) in rows
        .iter()
        .zip(&series)
        .zip(body.split_evenly((rows.len(), 1)).iter().zip(colors))
    {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{g:?}: {} lost, {} duplicated",
                    r.lost_total, r.duplicated_total
                ),
                ("sans-serif", 15),
            )
            .margin(6)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0usize..inputs, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("input record (in the order written)")
            .y_desc("outputs per input")
            .label_style(("sans-serif", 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        chart.draw_series(LineSeries::new(
            [(0, 1.0), (inputs, 1.0)],
            BLACK.mix(0.3).stroke_width(1),
        ))?;
        chart.draw_series(LineSeries::new(
            ys.iter()
                .enumerate()
                .flat_map(|(b, y)| [(b * BIN, *y), ((b + 1) * BIN, *y)]),
            color.stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}
