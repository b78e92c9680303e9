//! The outputs: `rebalance.json` (every figure), `rebalance.md` (the table and the ratios)
//! and `rebalance.png` (throughput over time, one panel per run, a mark per forced
//! rebalance).

use crate::fleet::Totals;
use crate::measure::Event;
use crate::workload::Verification;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One run's figures.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    /// `exactly_once`, `at_least_once`, `raw` or `exactly_once_steady`.
    pub name: String,
    /// Human label.
    pub label: String,
    /// `exactly_once`, `at_least_once` or `raw`.
    pub guarantee: String,
    /// Whether rebalances were forced.
    pub forced_rebalances: bool,
    pub output_topic: String,
    pub group: String,
    /// Input records present when the run started (the backlog).
    pub backlog_records: u64,
    /// Backlog records appended inside the throughput window (workloads that do not copy
    /// records, e.g. wordcount: the backlog's input records, all processed in it).
    pub window_records: u64,
    /// The throughput window: from the commit of the backlog (released once the group has
    /// settled) to the last backlog record's append time, s.
    pub drain_seconds: f64,
    /// `window_records / drain_seconds`.
    pub records_per_sec: f64,
    /// Whether the group settled (every worker a member with partitions) before the
    /// backlog was released.
    pub settled: bool,
    /// From starting the workers to the group settling (join, assignment), ms.
    pub startup_ms: f64,
    /// Writing the backlog (in one transaction), s.
    pub preload_seconds: f64,
    /// Wall time of the run (workers up to stopped), s.
    pub run_seconds: f64,
    /// Output records per second over the window, in bins (workloads that do not copy
    /// records: divided by the mean output records per input record).
    pub throughput_series: Vec<SeriesPoint>,
    pub bin_ms: i64,
    /// Forced rebalances (steady run: the same schedule, nothing done) and their pauses.
    pub events: Vec<Event>,
    /// The group as seen from outside (every change), members numbered in order of
    /// appearance; `t_s` from the start of the throughput window.
    pub group_history: Vec<GroupSample>,
    /// Which phase's events the pause figures come from: `live` (precise: the input
    /// arrives at a fixed rate) or `backlog` (when there is no live phase).
    pub pause_phase: String,
    /// Pause of each moved partition (events with no moved partition: the longest gap of
    /// any partition), over the events of `pause_phase`, ms.
    pub pause_ms_p50: Option<f64>,
    pub pause_ms_p99: Option<f64>,
    pub pause_ms_max: Option<f64>,
    pub pause_samples: u64,
    /// Per event, the longest gap of the partitions that did not move, ms (the steady
    /// run's figure is the measurement floor).
    pub retained_pause_ms_p50: Option<f64>,
    pub retained_pause_ms_p99: Option<f64>,
    pub retained_pause_ms_max: Option<f64>,
    /// From each event to the group's new stable assignment, ms.
    pub rebalance_ms_p50: Option<f64>,
    pub rebalance_ms_max: Option<f64>,
    /// Time in the framework's revoke callback (commit on revocation), from
    /// `exactly_rebalance_pause_seconds`.
    pub revoke_callback_ms_p50: Option<f64>,
    pub revoke_callback_ms_p99: Option<f64>,
    pub revoke_callback_ms_max: Option<f64>,
    pub commits: u64,
    pub aborts: u64,
    /// `StatsSnapshot.commit_time / commits` (summed over workers).
    pub commit_ms_mean: Option<f64>,
    /// From the framework's `exactly_commit_latency_seconds` histogram (in-process only).
    pub commit_ms_p50: Option<f64>,
    pub commit_ms_p99: Option<f64>,
    pub commit_ms_max: Option<f64>,
    /// Commits per second of the run.
    pub commits_per_sec: Option<f64>,
    /// Live phase: records fed at a fixed rate after the backlog, for latency.
    pub live_records: u64,
    /// Input timestamp (CreateTime at send) to output append time (LogAppendTime).
    pub e2e_append_ms_p50: Option<f64>,
    pub e2e_append_ms_p99: Option<f64>,
    pub e2e_append_ms_max: Option<f64>,
    /// Input timestamp to the moment a read_committed consumer of the output got it.
    pub e2e_visible_ms_p50: Option<f64>,
    pub e2e_visible_ms_p99: Option<f64>,
    pub e2e_visible_ms_max: Option<f64>,
    pub e2e_samples: u64,
    /// Peak RSS of the workers, MiB: the bench process's VmHWM during the run for
    /// in-process workers (includes the bench itself, see `rss_before_run_mib`), the
    /// largest worker process's VmHWM in process mode.
    pub peak_rss_mib: Option<f64>,
    pub rss_before_run_mib: Option<f64>,
    pub verification: Verification,
    /// `Some(true|false)` for exactly-once runs, `None` otherwise.
    pub exactly_once_verified: Option<bool>,
    pub totals: Totals,
}

/// One change of the group's state or assignment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GroupSample {
    pub t_s: f64,
    pub state: String,
    pub members: usize,
    /// Owner of each input partition (member number).
    pub owners: Vec<Option<u32>>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct SeriesPoint {
    pub t_s: f64,
    pub records_per_sec: f64,
}

/// A target of the issue, measured (never asserted).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    pub name: String,
    /// Decimals when printed.
    #[serde(skip)]
    pub digits: usize,
    pub value: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
}

/// Everything written to `rebalance.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub generated_at_unix_s: u64,
    pub total_seconds: f64,
    pub config: serde_json::Value,
    pub runs: Vec<RunResult>,
    pub ratios: serde_json::Value,
    pub targets: Vec<Target>,
    pub exactly_once_verified: bool,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) => format!("{x:.digits$}"),
        None => "–".to_string(),
    }
}

fn triple(a: Option<f64>, b: Option<f64>, c: Option<f64>) -> String {
    if a.is_none() && b.is_none() && c.is_none() {
        return "–".into();
    }
    format!("{} / {} / {}", opt(a, 0), opt(b, 0), opt(c, 0))
}

/// The markdown report.
pub fn markdown(r: &Report, setup: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{setup}\n");
    let _ = writeln!(
        s,
        "| run | records/s | pause of moved partitions p50 / p99 / max (ms) | longest gap of other partitions p50 / p99 / max (ms) | commit mean / p50 / p99 (ms) | commits | aborted | e2e append p50 / p99 (ms) | e2e visible p50 / p99 (ms) | peak RSS (MiB) | duplicates | lost | exactly once |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for run in &r.runs {
        let pause = triple(run.pause_ms_p50, run.pause_ms_p99, run.pause_ms_max);
        let retained = triple(
            run.retained_pause_ms_p50,
            run.retained_pause_ms_p99,
            run.retained_pause_ms_max,
        );
        let commit = if run.commits == 0 {
            "–".to_string()
        } else {
            format!(
                "{} / {} / {}",
                opt(run.commit_ms_mean, 1),
                opt(run.commit_ms_p50, 1),
                opt(run.commit_ms_p99, 1)
            )
        };
        let e2e = |a: Option<f64>, b: Option<f64>| {
            if a.is_none() {
                "–".to_string()
            } else {
                format!("{} / {}", opt(a, 0), opt(b, 0))
            }
        };
        let verified = match run.exactly_once_verified {
            Some(true) => "✅ verified",
            Some(false) => "❌ FAILED",
            None => "n/a",
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.label,
            run.records_per_sec,
            pause,
            retained,
            commit,
            run.commits,
            run.aborts,
            e2e(run.e2e_append_ms_p50, run.e2e_append_ms_p99),
            e2e(run.e2e_visible_ms_p50, run.e2e_visible_ms_p99),
            opt(run.peak_rss_mib, 0),
            run.verification.duplicates,
            run.verification.lost,
            verified
        );
    }
    let _ = writeln!(
        s,
        "\nrecords/s: backlog records / (last backlog append − release of the backlog). Pauses: \
         per forced rebalance of the live phase (input at a fixed rate), the append-time gap of \
         each partition that changed owner; \"other partitions\": the longest gap of those that \
         did not (in steady runs, at the same moments: the floor). e2e: input CreateTime to output \
         append time / to when a read_committed consumer got it. Peak RSS: VmHWM of the run's \
         process (in-process workers) or of the largest worker process."
    );
    let _ = writeln!(s, "\n| ratio / figure | value | target | met |");
    let _ = writeln!(s, "|---|---:|---|---|");
    for t in &r.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            t.name,
            opt(t.value, t.digits),
            t.target,
            met
        );
    }
    s
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// Throughput over time, one panel per run, a dashed red line at each forced rebalance
/// (grey in the steady run: where one would have been).
pub fn plot(r: &Report, path: &Path, title: &str) -> anyhow::Result<()> {
    let runs = &r.runs;
    if runs.is_empty() {
        return Ok(());
    }
    let panel_h = 210u32;
    let root =
        BitMapBackend::new(path, (960, 50 + panel_h * runs.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(50);
    top.titled(title, ("sans-serif", 20))?;
    let x_max = runs
        .iter()
        .map(|r| r.throughput_series.last().map_or(0.0, |p| p.t_s) + r.bin_ms as f64 / 1000.0)
        .fold(1.0, f64::max);
    let y_max = runs
        .iter()
        .flat_map(|r| r.throughput_series.iter().map(|p| p.records_per_sec))
        .fold(1.0, f64::max)
        * 1.1
        / 1000.0;
    for (i, (run, area)) in runs
        .iter()
        .zip(body.split_evenly((runs.len(), 1)))
        .enumerate()
    {
        let color = COLORS[i % COLORS.len()];
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!(
                    "{}: {:.0} records/s{}",
                    run.label,
                    run.records_per_sec,
                    run.pause_ms_p50
                        .filter(|_| run.forced_rebalances)
                        .map(|p| format!(", pause p50 {p:.0} ms"))
                        .unwrap_or_default()
                ),
                ("sans-serif", 15),
            )
            .margin(6)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the backlog was released")
            .y_desc("k records/s")
            .label_style(("sans-serif", 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let mark = if run.forced_rebalances {
            RED.mix(0.8)
        } else {
            BLACK.mix(0.25)
        };
        // Events of the backlog phase (the plotted one).
        let end = run.throughput_series.last().map_or(0.0, |p| p.t_s) + run.bin_ms as f64 / 1000.0;
        for e in run.events.iter().filter(|e| e.t_s >= 0.0 && e.t_s <= end) {
            // Dashes: short segments.
            let mut y = 0.0;
            while y < y_max {
                let y2 = (y + y_max / 30.0).min(y_max);
                chart.draw_series(LineSeries::new(
                    [(e.t_s, y), (e.t_s, y2)],
                    mark.stroke_width(2),
                ))?;
                y += y_max / 15.0;
            }
        }
        // Steps: each bin's rate drawn over the bin.
        let half = run.bin_ms as f64 / 1000.0;
        let pts: Vec<(f64, f64)> = run
            .throughput_series
            .iter()
            .flat_map(|p| {
                let y = p.records_per_sec / 1000.0;
                [(p.t_s, y), (p.t_s + half, y)]
            })
            .collect();
        chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}
