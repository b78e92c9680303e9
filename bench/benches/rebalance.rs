//! # `cargo bench -p exactly-bench --bench rebalance`
//!
//! Throughput, pause per rebalance, commit and end-to-end latency, aborted transactions and
//! peak RSS of a pipeline while rebalances are forced, under ExactlyOnce, AtLeastOnce and a
//! raw-client baseline, on one broker and one preloaded input; plus the ExactlyOnce run
//! without forced rebalances. Verifies every ExactlyOnce output (exit code 1 if one is not
//! exact) and writes `target/bench/rebalance.{json,md,png}`. Method and results:
//! `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench -p exactly-bench --bench rebalance                                 # defaults (< 3 min)
//! cargo bench -p exactly-bench --bench rebalance -- --pipeline wordcount          # stateful (< 4 min)
//! cargo bench -p exactly-bench --bench rebalance -- --records 200000 --runs exactly_once
//! cargo bench -p exactly-bench --bench rebalance -- --kill-restart --static-membership
//! cargo bench -p exactly-bench --bench rebalance -- --help
//! ```
//!
//! The parent process preloads the input and starts one child process per run (this
//! binary with `--child-run`), so that each run's peak RSS and metrics are its own.

#[path = "rebalance/fleet.rs"]
mod fleet;
#[path = "rebalance/group.rs"]
mod group;
#[path = "rebalance/measure.rs"]
mod measure;
#[path = "rebalance/report.rs"]
mod report;
#[path = "rebalance/run.rs"]
mod run;
#[path = "rebalance/workload.rs"]
mod workload;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use exactly::Guarantee;
use exactly_testkit as testkit;
use fleet::{Kind, RawSettings};
use report::{Report, RunResult, Target};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use workload::{PipelineKind, Workload};

/// The runs of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum RunName {
    /// The pipeline under ExactlyOnce, rebalances forced.
    #[value(name = "exactly_once")]
    ExactlyOnce,
    /// The same under AtLeastOnce.
    #[value(name = "at_least_once")]
    AtLeastOnce,
    /// Plain clients: consume → produce, auto commit, no transactions (the ceiling).
    #[value(name = "raw")]
    Raw,
    /// ExactlyOnce without forced rebalances.
    #[value(name = "exactly_once_steady")]
    ExactlyOnceSteady,
    /// AtLeastOnce without forced rebalances.
    #[value(name = "at_least_once_steady")]
    AtLeastOnceSteady,
    /// The raw baseline without forced rebalances.
    #[value(name = "raw_steady")]
    RawSteady,
}

impl RunName {
    pub fn name(self) -> &'static str {
        match self {
            RunName::ExactlyOnce => "exactly_once",
            RunName::AtLeastOnce => "at_least_once",
            RunName::Raw => "raw",
            RunName::ExactlyOnceSteady => "exactly_once_steady",
            RunName::AtLeastOnceSteady => "at_least_once_steady",
            RunName::RawSteady => "raw_steady",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            RunName::ExactlyOnce => "ExactlyOnce",
            RunName::AtLeastOnce => "AtLeastOnce",
            RunName::Raw => "raw baseline",
            RunName::ExactlyOnceSteady => "ExactlyOnce, no rebalances",
            RunName::AtLeastOnceSteady => "AtLeastOnce, no rebalances",
            RunName::RawSteady => "raw, no rebalances",
        }
    }
    pub fn kind(self) -> Kind {
        match self {
            RunName::ExactlyOnce | RunName::ExactlyOnceSteady => {
                Kind::Framework(Guarantee::ExactlyOnce)
            }
            RunName::AtLeastOnce | RunName::AtLeastOnceSteady => {
                Kind::Framework(Guarantee::AtLeastOnce)
            }
            RunName::Raw | RunName::RawSteady => Kind::Raw,
        }
    }
    pub fn rebalances(self) -> bool {
        matches!(
            self,
            RunName::ExactlyOnce | RunName::AtLeastOnce | RunName::Raw
        )
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Rebalance benchmark: throughput and pauses of a pipeline under forced rebalances, \
             ExactlyOnce vs AtLeastOnce vs raw clients. Writes target/bench/rebalance.{json,md,png}."
)]
pub struct Args {
    /// Records preloaded into the input topic [default: 1000000 for copy, 200000 for
    /// wordcount].
    #[arg(long)]
    pub records: Option<u64>,
    /// Partitions of the input (and of each output) topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Workers in the group (one more joins and leaves to force rebalances).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Seconds between forced rebalances (0: none in any run).
    #[arg(long, default_value_t = 5.0)]
    pub rebalance_every_s: f64,
    /// The pipeline under test.
    #[arg(long, value_enum, default_value = "copy")]
    pub pipeline: PipelineKind,
    /// Workers are processes (the copier or wordcount example; this bench for the raw
    /// baseline); each forced rebalance SIGKILLs one and starts it again at once (instead
    /// of a join/leave).
    #[arg(long)]
    pub kill_restart: bool,
    /// Static membership: each worker has a `group.instance.id`
    /// (`Config::with_group_instance_id`).
    #[arg(long)]
    pub static_membership: bool,
    /// Commit interval of the framework (and auto-commit interval of the raw baseline), ms.
    #[arg(long, default_value_t = 100)]
    pub commit_interval_ms: u64,
    /// Partition assignment of every worker, raw ones included.
    #[arg(long, value_enum, default_value = "cooperative-sticky")]
    pub assignment: fleet::AssignmentArg,
    /// Consumer session timeout, ms (the framework's default is 45000).
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Seconds of live input after the backlog, for end-to-end latency and pauses (0: none).
    #[arg(long, default_value_t = 10.0)]
    pub live_seconds: f64,
    /// Seconds of live input in the runs without forced rebalances.
    #[arg(long, default_value_t = 5.0)]
    pub steady_live_seconds: f64,
    /// Records per second of the live input.
    #[arg(long, default_value_t = 5_000)]
    pub live_rate: u64,
    /// Which runs, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "exactly_once,at_least_once,raw,exactly_once_steady,at_least_once_steady,raw_steady"
    )]
    pub runs: Vec<RunName>,
    /// Width of a throughput bin, ms.
    #[arg(long, default_value_t = 500)]
    pub bin_ms: i64,
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Output directory (default: <target dir>/bench).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Worker binary for --kill-restart (default: <target dir>/release/examples/copier, or
    /// .../wordcount).
    #[arg(long)]
    pub worker_binary: Option<PathBuf>,
    /// librdkafka producer property for every worker, raw ones included (repeatable).
    #[arg(long = "producer-property", value_parser = parse_kv)]
    pub producer_props: Vec<(String, String)>,
    /// librdkafka consumer property for every worker, raw ones included (repeatable).
    #[arg(long = "consumer-property", value_parser = parse_kv)]
    pub consumer_props: Vec<(String, String)>,
    /// Keep the topics (default: deleted at the end).
    #[arg(long)]
    pub keep_topics: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Internal: run one run in this process (a `ChildRun` as JSON).
    #[arg(long, hide = true)]
    pub child: Option<String>,
    /// Internal: run as one raw-baseline worker process (`RawSettings` as JSON).
    #[arg(long, hide = true)]
    pub raw_worker: Option<String>,
}

impl Args {
    /// `--records`, or the pipeline's default.
    pub fn records(&self) -> u64 {
        self.records
            .unwrap_or_else(|| self.pipeline.default_records())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if let Some(json) = &args.raw_worker {
        raw_worker_process(json).map(|()| true)
    } else if let Some(json) = &args.child {
        child_run(&args, json).map(|()| true)
    } else {
        bench(args)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("exactly-once verification FAILED (see the table above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATED.store(true, Ordering::Relaxed);
}

/// `--raw-worker`: one raw-baseline group member until SIGTERM.
fn raw_worker_process(json: &str) -> anyhow::Result<()> {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let s: RawSettings = serde_json::from_str(json).context("--raw-worker")?;
    let workload = s.pipeline.for_run(Kind::Raw);
    fleet::run_raw_worker(&s, &*workload, &TERMINATED, &AtomicU64::new(0))
}

/// What the parent tells a run process (besides its own flags, passed on unchanged).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ChildRun {
    run: RunName,
    brokers: String,
    input: String,
    output: String,
    group: String,
    backlog: u64,
    result: PathBuf,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn out_dir(args: &Args) -> PathBuf {
    args.out_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("bench"))
}

/// Framework logs (RUST_LOG, default warn) go to `rebalance.log`, not between the bars.
fn init_logging(path: &Path, truncate: bool) -> anyhow::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(!truncate)
        .write(true)
        .truncate(truncate)
        .open(path)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(false)
        // With RUST_LOG=exactly_framework=debug, each commit cycle's span logs its duration.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(Mutex::new(log))
        .try_init();
    Ok(())
}

/// `--child`: one run, its result written as JSON for the parent.
fn child_run(args: &Args, json: &str) -> anyhow::Result<()> {
    let child: ChildRun = serde_json::from_str(json).context("--child")?;
    let spec = child.run;
    let out_dir = out_dir(args);
    init_logging(&out_dir.join("rebalance.log"), false)?;
    // Installed before any worker starts, so commit latencies are recorded.
    measure::framework_histograms();
    let workload: Arc<dyn Workload> = Arc::from(args.pipeline.for_run(spec.kind()));
    let ctx = run::Ctx {
        brokers: child.brokers,
        input: child.input,
        output: child.output,
        group: child.group,
        backlog: child.backlog,
        worker_binary: worker_binary(args, &*workload),
        workload,
        out_dir,
        args: args.clone(),
    };
    let result = run::run_one(&ctx, spec)?;
    std::fs::write(&child.result, serde_json::to_vec(&result)?)?;
    Ok(())
}

fn worker_binary(args: &Args, workload: &dyn Workload) -> PathBuf {
    args.worker_binary.clone().unwrap_or_else(|| {
        target_dir()
            .join("release")
            .join("examples")
            .join(workload.process_binary())
    })
}

/// Topics created by the bench, deleted when dropped (unless kept).
struct Topics {
    brokers: String,
    names: Vec<String>,
    keep: bool,
}

impl Topics {
    fn create(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        testkit::create_topic_with(&self.brokers, name, partitions, configs)?;
        self.names.push(name.to_string());
        Ok(())
    }

    /// Takes charge of a topic someone else creates (the framework's internal topics).
    fn adopt(&mut self, name: &str) {
        self.names.push(name.to_string());
    }

    fn delete(&mut self, name: &str) {
        if self.keep {
            return;
        }
        if let Err(e) = testkit::delete_topic(&self.brokers, &[name]) {
            eprintln!("warning: could not delete topic {name}: {e}");
        }
        self.names.retain(|n| n != name);
    }
}

impl Drop for Topics {
    fn drop(&mut self) {
        if self.keep || self.names.is_empty() {
            return;
        }
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        if let Err(e) = testkit::delete_topic(&self.brokers, &names) {
            eprintln!("warning: could not delete topics {names:?}: {e}");
        }
    }
}

fn bench(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    if args.workers == 0 || args.partitions <= 0 || args.records() == 0 {
        bail!("--workers, --partitions and --records must be positive");
    }
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None => testkit::bootstrap_servers()?,
    };
    let workload = args.pipeline.workload();
    let out_dir = out_dir(&args);
    std::fs::create_dir_all(out_dir.join("runs"))?;
    let log_path = out_dir.join("rebalance.log");
    init_logging(&log_path, true)?;
    let binary = worker_binary(&args, &*workload);
    let framework_processes = args.kill_restart && args.runs.iter().any(|r| r.kind() != Kind::Raw);
    if framework_processes && !binary.exists() {
        bail!(
            "--kill-restart needs the worker binary {}: run `cargo build --release --examples` first",
            binary.display()
        );
    }

    let mut topics = Topics {
        brokers: brokers.clone(),
        names: Vec::new(),
        keep: args.keep_topics,
    };
    println!(
        "{} runs on {brokers}: each preloads {} records into a fresh {}-partition input",
        args.runs.len(),
        args.records(),
        args.partitions
    );
    let mut runs = Vec::new();
    for spec in &args.runs {
        let slug = spec.name().replace('_', "-");
        let input = testkit::unique_name(&format!("bench-rebalance-in-{slug}"));
        topics.create(&input, args.partitions, &[])?;
        let output = testkit::unique_name(&format!("bench-rebalance-out-{slug}"));
        topics.create(
            &output,
            args.partitions,
            &[("message.timestamp.type", "LogAppendTime")],
        )?;
        let group = testkit::unique_name(&format!("bench-rebalance-{slug}"));
        let internal = args.pipeline.for_run(spec.kind()).internal_topics(&group);
        for t in &internal {
            topics.adopt(t);
        }
        let result_path = out_dir.join("runs").join(format!("{}.json", spec.name()));
        let _ = std::fs::remove_file(&result_path);
        let child = ChildRun {
            run: *spec,
            brokers: brokers.clone(),
            input: input.clone(),
            output: output.clone(),
            group: group.clone(),
            backlog: args.records(),
            result: result_path.clone(),
        };
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(std::env::args_os().skip(1))
            .arg("--child")
            .arg(serde_json::to_string(&child)?);
        let status = cmd.status().context("cannot start a run process")?;
        if !status.success() {
            bail!(
                "run {} failed ({status}); framework logs: {}",
                spec.name(),
                log_path.display()
            );
        }
        let r: RunResult = serde_json::from_slice(&std::fs::read(&result_path)?)
            .with_context(|| format!("result of run {}", spec.name()))?;
        for t in internal.iter().chain([&output, &input]) {
            topics.delete(t);
        }
        println!(
            "{:>27}: {:.0} records/s, pause of moved partitions p50 {} ms, {} commits, {} aborted, {} duplicates, {}",
            r.label,
            r.records_per_sec,
            r.pause_ms_p50.map_or("–".into(), |p| format!("{p:.0}")),
            r.commits,
            r.aborts,
            r.verification.duplicates,
            match r.exactly_once_verified {
                Some(true) => "exactly once: verified",
                Some(false) => "exactly once: FAILED",
                None => "not verified (not exactly-once)",
            }
        );
        runs.push(r);
    }
    drop(topics);

    let report = build_report(&args, &brokers, runs, started);
    let json_path = out_dir.join("rebalance.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let md = format!(
        "## `cargo bench -p exactly-bench --bench rebalance`\n\n{}\nTotal time {:.0} s. Generated by `cargo bench -p exactly-bench --bench rebalance`; every figure is in `target/bench/rebalance.json`.\n",
        report::markdown(&report, &setup_line(&args)),
        report.total_seconds
    );
    let md_path = out_dir.join("rebalance.md");
    std::fs::write(&md_path, &md)?;
    let png = out_dir.join("rebalance.png");
    let title = format!(
        "{:?} pipeline: input records/s over time; dashed lines: forced rebalances",
        args.pipeline
    );
    if let Err(e) = report::plot(&report, &png, &title) {
        eprintln!("warning: could not draw {}: {e:#}", png.display());
    }
    println!("\n{md}");
    println!(
        "wrote {}, {}, {}; framework logs in {} ({:.0} s in all)",
        json_path.display(),
        md_path.display(),
        png.display(),
        log_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(report.exactly_once_verified)
}

fn setup_line(args: &Args) -> String {
    let mode = if args.rebalance_every_s <= 0.0 {
        "no forced rebalances".to_string()
    } else if args.kill_restart {
        format!(
            "every {} s one worker process is SIGKILLed and restarted",
            args.rebalance_every_s
        )
    } else {
        format!(
            "every {} s a worker joins, or leaves again",
            args.rebalance_every_s
        )
    };
    let mut props: Vec<String> = args
        .producer_props
        .iter()
        .map(|(k, v)| format!("producer {k}={v}"))
        .chain(
            args.consumer_props
                .iter()
                .map(|(k, v)| format!("consumer {k}={v}")),
        )
        .collect();
    if props.is_empty() {
        props.push("librdkafka defaults".into());
    }
    format!(
        "`{:?}` pipeline, {} records, {} partitions, {} {} workers ({} membership, {}); {mode}; \
         commit interval {} ms; session timeout {} ms; {}; {} cores shared with the broker. {}.",
        args.pipeline,
        args.records(),
        args.partitions,
        args.workers,
        if args.kill_restart {
            "process"
        } else {
            "in-process"
        },
        if args.static_membership {
            "static"
        } else {
            "dynamic"
        },
        args.assignment.librdkafka(),
        args.commit_interval_ms,
        args.session_timeout_ms,
        props.join(", "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.pipeline.describe()
    )
}

fn build_report(args: &Args, brokers: &str, runs: Vec<RunResult>, started: Instant) -> Report {
    let find = |name: &str| runs.iter().find(|r| r.name == name);
    let rps = |name: &str| find(name).map(|r| r.records_per_sec);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let eos_alo = ratio(rps("exactly_once"), rps("at_least_once"));
    let eos_raw = ratio(rps("exactly_once"), rps("raw"));
    let alo_raw = ratio(rps("at_least_once"), rps("raw"));
    let eos_alo_steady = ratio(rps("exactly_once_steady"), rps("at_least_once_steady"));
    let eos_raw_steady = ratio(rps("exactly_once_steady"), rps("raw_steady"));
    let alo_raw_steady = ratio(rps("at_least_once_steady"), rps("raw_steady"));
    let reb_steady = ratio(rps("exactly_once"), rps("exactly_once_steady"));
    let alo_reb_steady = ratio(rps("at_least_once"), rps("at_least_once_steady"));
    let raw_reb_steady = ratio(rps("raw"), rps("raw_steady"));
    let pause_p50 = find("exactly_once").and_then(|r| r.pause_ms_p50);
    let target = |name: &str, value: Option<f64>, text: &str, ok: fn(f64) -> bool| Target {
        digits: if text.starts_with('≤') { 0 } else { 2 },
        name: name.into(),
        value,
        target: text.into(),
        met: value.map(ok),
    };
    let pause_name = if args.kill_restart {
        "ExactlyOnce pause of the partitions of a killed-and-restarted worker, p50 (ms)"
    } else if args.static_membership {
        "ExactlyOnce pause of moved partitions per static-member join/leave, p50 (ms)"
    } else {
        "ExactlyOnce pause of moved partitions per cooperative rebalance, p50 (ms)"
    };
    let every = args.rebalance_every_s;
    let targets = vec![
        target(
            "ExactlyOnce / AtLeastOnce throughput, no forced rebalances",
            eos_alo_steady,
            "≥ 0.90",
            |v| v >= 0.9,
        ),
        target(
            &format!("ExactlyOnce / AtLeastOnce throughput, a rebalance every {every} s"),
            eos_alo,
            "≥ 0.90",
            |v| v >= 0.9,
        ),
        target(
            "ExactlyOnce / raw throughput, no forced rebalances",
            eos_raw_steady,
            "≥ 0.75",
            |v| v >= 0.75,
        ),
        target(
            &format!("ExactlyOnce / raw throughput, a rebalance every {every} s"),
            eos_raw,
            "≥ 0.75",
            |v| v >= 0.75,
        ),
        target(pause_name, pause_p50, "≤ 300", |v| v <= 300.0),
        target(
            &format!("ExactlyOnce throughput with a rebalance every {every} s / without"),
            reb_steady,
            "≥ 0.80",
            |v| v >= 0.8,
        ),
    ];
    let ratios = serde_json::json!({
        "exactly_once_over_at_least_once": eos_alo,
        "exactly_once_over_raw": eos_raw,
        "at_least_once_over_raw": alo_raw,
        "exactly_once_over_at_least_once_steady": eos_alo_steady,
        "exactly_once_over_raw_steady": eos_raw_steady,
        "at_least_once_over_raw_steady": alo_raw_steady,
        "exactly_once_with_rebalances_over_without": reb_steady,
        "at_least_once_with_rebalances_over_without": alo_reb_steady,
        "raw_with_rebalances_over_without": raw_reb_steady,
    });
    let config = serde_json::json!({
        "pipeline": args.pipeline,
        "records": args.records(),
        "partitions": args.partitions,
        "workers": args.workers,
        "rebalance_every_s": args.rebalance_every_s,
        "mode": if args.kill_restart { "kill_restart" } else { "join_leave" },
        "workers_are": if args.kill_restart { "processes" } else { "in_process" },
        "static_membership": args.static_membership,
        "assignment": args.assignment,
        "commit_interval_ms": args.commit_interval_ms,
        "session_timeout_ms": args.session_timeout_ms,
        "live_seconds": args.live_seconds,
        "steady_live_seconds": args.steady_live_seconds,
        "live_rate_per_sec": args.live_rate,
        "bin_ms": args.bin_ms,
        "runs": args.runs.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "producer_properties": args.producer_props.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "consumer_properties": args.consumer_props.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "brokers": brokers,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
    });
    let exactly_once_verified = runs.iter().all(|r| r.exactly_once_verified != Some(false));
    Report {
        bench: "rebalance",
        generated_at_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        total_seconds: started.elapsed().as_secs_f64(),
        config,
        runs,
        ratios,
        targets,
        exactly_once_verified,
    }
}
