//! # `cargo bench -p exactly-bench --bench compare`
//!
//! exactly against Kafka Streams on the same broker, the same input and the same machine, in
//! one invocation: the word count and the copy, one process each, each system with its
//! defaults (exactly: `wordcount --member` / `copier`, one worker, exactly_once, 100 ms
//! commits; Kafka Streams 4.1.1: `scripts/kstreams run`, exactly_once_v2, 100 ms commits,
//! its record cache, one stream thread), plus exactly under at_least_once. Each system is
//! timed from outside and in the same way: from the group's first committed offset until
//! its committed offsets reach the end of the input and of the repartition topic (so
//! process start-up is not counted); runs alternate between systems and repeat, and the
//! report gives every run and the median ratio. Every output is checked under
//! `read_committed`: each word's last count is its number of occurrences, the copy has
//! every record. Writes `target/bench/compare.{json,md,png}`.
//!
//! ```text
//! cargo bench -p exactly-bench --bench compare                          # about 5 min
//! cargo bench -p exactly-bench --bench compare -- --repeats 1 --kjv-copies 2
//! cargo bench -p exactly-bench --bench compare -- --pipelines wordcount --systems exactly,kstreams,exactly-alo
//! ```

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use exactly_testkit as testkit;
use exactly_testkit::process::{children, vm_mib};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum PipelineArg {
    Wordcount,
    Copy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum System {
    /// exactly, exactly_once (its default).
    Exactly,
    /// exactly, at_least_once.
    ExactlyAlo,
    /// exactly, exactly_once, two workers in the one process (`EXACTLY_WORKERS=2`).
    Exactly2w,
    /// Kafka Streams 4.1.1, exactly_once_v2.
    Kstreams,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Exactly => "exactly (exactly_once)",
            System::ExactlyAlo => "exactly (at_least_once)",
            System::Exactly2w => "exactly (exactly_once, 2 workers)",
            System::Kstreams => "Kafka Streams (exactly_once_v2)",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "exactly against Kafka Streams: word count and copy, same broker and input")]
struct Args {
    /// Pipelines, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "wordcount,copy"
    )]
    pipelines: Vec<PipelineArg>,
    /// Systems, in the order each repeat runs them.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "exactly,kstreams,exactly-alo"
    )]
    systems: Vec<System>,
    /// Runs of each (pipeline, system).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Runs of the first system before the measured ones, per pipeline, not reported: the
    /// broker's JIT and page cache warm up on them (the first measured run was otherwise
    /// up to 25 % slower than the next two).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// The word count reads the KJV this many times (8: 248,816 lines, 6.3M words).
    #[arg(long, default_value_t = 8)]
    kjv_copies: usize,
    /// Records of the copy's input (lines of the KJV, key = the line number).
    #[arg(long, default_value_t = 2_000_000)]
    copy_records: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One timed run.
#[derive(Debug, Clone, serde::Serialize)]
struct RunResult {
    pipeline: PipelineArg,
    system: System,
    repeat: usize,
    input_records: u64,
    seconds: f64,
    records_per_sec: f64,
    output_records: u64,
    peak_rss_mib: f64,
    verified: bool,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None => testkit::bootstrap_servers()?,
    };
    eprintln!("building the exactly examples (release) and the Kafka Streams app ...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo())
        .args([
            "build",
            "--release",
            "-p",
            "exactly",
            "--example",
            "wordcount",
            "--example",
            "copier",
        ])
        .status()?;
    if !status.success() {
        bail!("building the examples failed");
    }
    let status = Command::new("bash")
        .arg(repo().join("scripts/kstreams"))
        .arg("build")
        .status()?;
    if !status.success() {
        bail!("building the Kafka Streams app failed (scripts/kstreams build)");
    }
    let out_dir = repo().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut results = Vec::new();
    for &pipeline in &args.pipelines {
        let (lines, expected) = input(&args, pipeline);
        let topic = testkit::unique_name(&format!("compare-{pipeline:?}-in").to_lowercase());
        testkit::create_topic(&brokers, &topic, args.partitions)?;
        let p = args.partitions;
        testkit::Loader::new(&brokers)?.send(
            &topic,
            lines.iter().enumerate().map(|(i, l)| {
                let key = (pipeline == PipelineArg::Copy).then(|| i.to_string());
                (Some(i as i32 % p), key, l.as_str())
            }),
        )?;
        eprintln!("{pipeline:?}: {} input records in {topic}", lines.len());
        // clap gives at least one system (an empty value does not parse).
        let system = args.systems[0];
        for _ in 0..args.warmup {
            let r = run_one(
                &brokers,
                &topic,
                pipeline,
                system,
                0,
                &args,
                lines.len() as u64,
                &expected,
            )?;
            eprintln!(
                "  {pipeline:?} warm-up: {}: {:.0} records/s (not reported)",
                system.label(),
                r.records_per_sec
            );
        }
        for repeat in 0..args.repeats {
            for &system in &args.systems {
                let r = run_one(
                    &brokers,
                    &topic,
                    pipeline,
                    system,
                    repeat,
                    &args,
                    lines.len() as u64,
                    &expected,
                )?;
                eprintln!(
                    "  {:?} #{}: {:>26}: {:>9.0} records/s ({:.1} s, {} output records, peak RSS {:.0} MiB){}",
                    pipeline,
                    repeat + 1,
                    system.label(),
                    r.records_per_sec,
                    r.seconds,
                    r.output_records,
                    r.peak_rss_mib,
                    if r.verified { "" } else { "  NOT VERIFIED" }
                );
                results.push(r);
            }
        }
        let _ = testkit::delete_topic(&brokers, &[&topic]);
    }
    let md = report(&results);
    println!("\n{md}");
    std::fs::write(out_dir.join("compare.md"), &md)?;
    std::fs::write(
        out_dir.join("compare.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    plot(&results, &out_dir.join("compare.png"))?;
    println!(
        "wrote {}/compare.{{json,md,png}} ({:.0} s in all)",
        out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    if results.iter().any(|r| !r.verified) {
        bail!("an output was not verified (see above)");
    }
    Ok(())
}

/// The input lines and, for the word count, each word's number of occurrences.
fn input(args: &Args, pipeline: PipelineArg) -> (Vec<String>, BTreeMap<String, u64>) {
    let kjv: Vec<&str> = testkit::wordcount::KJV
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    match pipeline {
        PipelineArg::Wordcount => {
            let lines: Vec<String> = (0..args.kjv_copies)
                .flat_map(|_| kjv.iter().map(|l| l.to_string()))
                .collect();
            let expected = testkit::wordcount::expected_counts(lines.iter().map(String::as_str));
            (lines, expected)
        }
        PipelineArg::Copy => {
            let lines = kjv
                .iter()
                .cycle()
                .take(args.copy_records)
                .map(|l| l.to_string())
                .collect();
            (lines, BTreeMap::new())
        }
    }
}

/// Starts one system's process on `input`, times it from outside, stops it, verifies.
#[allow(clippy::too_many_arguments)]
fn run_one(
    brokers: &str,
    input: &str,
    pipeline: PipelineArg,
    system: System,
    repeat: usize,
    args: &Args,
    records: u64,
    expected: &BTreeMap<String, u64>,
) -> anyhow::Result<RunResult> {
    let group = testkit::unique_name("compare");
    let output = format!("{group}-out");
    testkit::create_topic(brokers, &output, args.partitions)?;
    let state = std::env::temp_dir().join(&group);
    let mut cmd = match system {
        System::Exactly | System::ExactlyAlo | System::Exactly2w => {
            let example = match pipeline {
                PipelineArg::Wordcount => "wordcount",
                PipelineArg::Copy => "copier",
            };
            let mut c = Command::new(repo().join("target/release/examples").join(example));
            if pipeline == PipelineArg::Wordcount {
                c.arg("--member");
            }
            c.args([
                "--brokers",
                brokers,
                "--group",
                &group,
                "--input",
                input,
                "--output",
                &output,
            ])
            .args([
                "--guarantee",
                if system != System::ExactlyAlo {
                    "exactly_once"
                } else {
                    "at_least_once"
                },
            ])
            .env("EXACTLY_STATE_DIR", &state)
            .env(
                "EXACTLY_WORKERS",
                if system == System::Exactly2w {
                    "2"
                } else {
                    "1"
                },
            );
            c
        }
        System::Kstreams => {
            let mut c = Command::new("bash");
            c.arg(repo().join("scripts/kstreams"))
                .arg("run")
                .arg(match pipeline {
                    PipelineArg::Wordcount => "wordcount",
                    PipelineArg::Copy => "copy",
                })
                .args([
                    "--brokers",
                    brokers,
                    "--app-id",
                    &group,
                    "--input",
                    input,
                    "--output",
                    &output,
                ])
                .arg("--state-dir")
                .arg(&state);
            c
        }
    };
    let log = std::env::temp_dir().join(format!("{group}.log"));
    let file = std::fs::File::create(&log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {}", system.label()))?;
    // Drain the child's stdout so it never blocks on a full pipe.
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
    }
    let topics: Vec<String> = match pipeline {
        PipelineArg::Wordcount => vec![input.to_string(), format!("{group}-words-repartition")],
        PipelineArg::Copy => vec![input.to_string()],
    };
    let timed = time_until_caught_up(brokers, &group, &topics, &mut child, &log);
    let peak = peak_rss_mib(&child);
    stop(&mut child);
    let (seconds, _) = timed?;
    let out = testkit::read_to_end(
        brokers,
        &output,
        testkit::Isolation::ReadCommitted,
        Duration::from_secs(120),
    )?;
    let verified = match pipeline {
        PipelineArg::Copy => {
            out.len() as u64 == records
                || system == System::ExactlyAlo && out.len() as u64 >= records
        }
        PipelineArg::Wordcount => {
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            for r in &out {
                let w = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string();
                let n = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                    .parse()
                    .unwrap_or(0);
                last.insert(w, n);
            }
            &last == expected
        }
    };
    let mut internal: Vec<String> = vec![output.clone(), format!("{group}-words-repartition")];
    internal.push(exactly::framework::state::changelog::topic_name(
        &group, "count", "counts",
    ));
    internal.push(format!("{group}-counts-changelog"));
    internal.push(format!("{group}-counts-repartition"));
    let names: Vec<&str> = internal.iter().map(String::as_str).collect();
    let _ = testkit::delete_topic(brokers, &names);
    let _ = std::fs::remove_dir_all(&state);
    Ok(RunResult {
        pipeline,
        system,
        repeat,
        input_records: records,
        seconds,
        records_per_sec: records as f64 / seconds,
        output_records: out.len() as u64,
        peak_rss_mib: peak,
        verified,
    })
}

/// Seconds from the group's first committed offset on the input until its committed
/// offsets reach the end of every topic in `topics`, in that order.
fn time_until_caught_up(
    brokers: &str,
    group: &str,
    topics: &[String],
    child: &mut Child,
    log: &Path,
) -> anyhow::Result<(f64, ())> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    let alive = |child: &mut Child| -> anyhow::Result<()> {
        if let Some(status) = child.try_wait()? {
            bail!("the process exited ({status}); its log: {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("not caught up in 30 min; log: {}", log.display());
        }
        Ok(())
    };
    // Start: the first committed offset (the first commit of the group).
    let start = loop {
        alive(child)?;
        let committed = testkit::committed_offsets(brokers, group, &topics[0]).unwrap_or_default();
        if committed.iter().any(|(_, o)| o.is_some_and(|o| o > 0)) {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for topic in topics {
        while !testkit::caught_up(brokers, group, topic).unwrap_or(false) {
            alive(child)?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok((start.elapsed().as_secs_f64(), ()))
}

/// The peak resident set of `child` and its children (VmHWM), MiB.
fn peak_rss_mib(child: &Child) -> f64 {
    let hwm = |pid| vm_mib(Some(pid), "VmHWM").unwrap_or(0.0);
    children(child.id())
        .into_iter()
        .map(hwm)
        .fold(hwm(child.id()), f64::max)
}

/// SIGTERM to the process and its children, then wait.
fn stop(child: &mut Child) {
    let pid = child.id();
    // SAFETY: kill(2) with pids of processes this bench started.
    unsafe {
        for k in children(pid) {
            libc::kill(k as i32, libc::SIGTERM);
        }
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn rates(results: &[RunResult], p: PipelineArg, s: System) -> Vec<f64> {
    results
        .iter()
        .filter(|r| r.pipeline == p && r.system == s)
        .map(|r| r.records_per_sec)
        .collect()
}

fn report(results: &[RunResult]) -> String {
    let mut md = String::from(
        "| pipeline | system | records/s (each run) | median | peak RSS MiB | verified |\n|---|---|---|---:|---:|---|\n",
    );
    let pipelines: std::collections::BTreeSet<PipelineArg> =
        results.iter().map(|r| r.pipeline).collect();
    let systems: std::collections::BTreeSet<System> = results.iter().map(|r| r.system).collect();
    for &p in &pipelines {
        for &s in &systems {
            let runs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.pipeline == p && r.system == s)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let each: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.0}", r.records_per_sec))
                .collect();
            let _ = writeln!(
                md,
                "| {p:?} | {} | {} | {:.0} | {:.0} | {} |",
                s.label(),
                each.join(", "),
                median(rates(results, p, s)),
                runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max),
                if runs.iter().all(|r| r.verified) {
                    "yes"
                } else {
                    "**no**"
                }
            );
        }
    }
    md.push_str("\n| ratio | runs | median |\n|---|---|---:|\n");
    for &p in &pipelines {
        for (a, b, what) in [
            (System::Exactly, System::Kstreams, "exactly / Kafka Streams"),
            (
                System::Exactly,
                System::ExactlyAlo,
                "exactly_once / at_least_once",
            ),
            (
                System::Exactly2w,
                System::Exactly,
                "exactly, 2 workers / 1 worker",
            ),
            (
                System::Exactly2w,
                System::Kstreams,
                "exactly, 2 workers / Kafka Streams",
            ),
        ] {
            let (ra, rb) = (rates(results, p, a), rates(results, p, b));
            if ra.is_empty() || rb.is_empty() {
                continue;
            }
            let each: Vec<f64> = ra.iter().zip(&rb).map(|(x, y)| x / y).collect();
            let shown: Vec<String> = each.iter().map(|x| format!("{x:.2}")).collect();
            let _ = writeln!(
                md,
                "| {p:?}: {what} | {} | {:.2} |",
                shown.join(", "),
                median(each)
            );
        }
    }
    md.push_str(
        "\nrecords/s: input records / seconds from the group's first committed offset until its committed \
         offsets reach the end of the input and of the repartition topic (measured from outside, the same for \
         every system). One process per system, each with its defaults, on the same broker and machine.\n",
    );
    md
}

fn plot(results: &[RunResult], path: &Path) -> anyhow::Result<()> {
    let pipelines: Vec<PipelineArg> = {
        let s: std::collections::BTreeSet<PipelineArg> =
            results.iter().map(|r| r.pipeline).collect();
        s.into_iter().collect()
    };
    let systems: Vec<System> = {
        let s: std::collections::BTreeSet<System> = results.iter().map(|r| r.system).collect();
        s.into_iter().collect()
    };
    let root =
        BitMapBackend::new(path, (900, 360 * pipelines.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((pipelines.len().max(1), 1));
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
    ];
    for (panel, &p) in panels.iter().zip(&pipelines) {
        let medians: Vec<f64> = systems
            .iter()
            .map(|&s| median(rates(results, p, s)))
            .collect();
        let top = medians.iter().cloned().fold(1.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{p:?}: median records/s (each run: dots)"),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..systems.len() as f64, 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("records/s")
            .draw()?;
        for (i, (&s, m)) in systems.iter().zip(&medians).enumerate() {
            let c = colors[i % colors.len()];
            let x = i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.15, 0.0), (x + 0.85, *m)],
                    c.mix(0.7).filled(),
                )))?
                .label(s.label())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
            chart.draw_series(
                rates(results, p, s)
                    .into_iter()
                    .map(|r| Circle::new((x + 0.5, r), 4, BLACK.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
