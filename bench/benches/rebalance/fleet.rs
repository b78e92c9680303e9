//! The members of one run's consumer group: in-process framework workers
//! (`Runtime::spawn`), raw-baseline threads, or worker processes (the workload's example:
//! copier or wordcount, or this bench re-executed as a raw worker) for `--kill-restart`.
//! Every framework member incarnation gets a state dir of its own under the run's
//! (removed with the fleet).
//!
//! A member that stops on its own (an error) is restarted in its slot, as a supervisor
//! would, and the error is reported.

use crate::measure::vm_mib;
use crate::workload::{PipelineKind, Workload};
use anyhow::Context as _;
use exactly::{Config, Guarantee, Runtime, Worker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the group's members run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The pipeline on the framework, with this guarantee.
    Framework(Guarantee),
    /// consume → produce with plain clients, auto commit, no transactions.
    Raw,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Framework(Guarantee::ExactlyOnce) => "exactly_once",
            Kind::Framework(Guarantee::AtLeastOnce) => "at_least_once",
            Kind::Framework(Guarantee::AutoCommit) => "auto_commit",
            Kind::Raw => "raw",
        }
    }
}

/// `--assignment`: the partition assignment strategy of every worker.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AssignmentArg {
    /// Incremental: only moved partitions stop (the framework's default).
    CooperativeSticky,
    /// Eager, per topic: each topic's partitions split evenly over the members.
    Range,
    /// Eager round robin over all topics' partitions.
    Roundrobin,
}

impl AssignmentArg {
    /// The framework's setting.
    pub fn framework(self) -> exactly::Assignment {
        match self {
            AssignmentArg::CooperativeSticky => exactly::Assignment::CooperativeSticky,
            AssignmentArg::Range => exactly::Assignment::Range,
            AssignmentArg::Roundrobin => exactly::Assignment::RoundRobin,
        }
    }

    /// librdkafka's `partition.assignment.strategy`.
    pub fn librdkafka(self) -> &'static str {
        match self {
            AssignmentArg::CooperativeSticky => "cooperative-sticky",
            AssignmentArg::Range => "range",
            AssignmentArg::Roundrobin => "roundrobin",
        }
    }
}

/// Settings of a raw-baseline worker (a raw worker process gets them as JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RawSettings {
    pub pipeline: PipelineKind,
    pub brokers: String,
    pub group: String,
    pub input: String,
    pub output: String,
    pub instance: Option<String>,
    pub commit_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub assignment: AssignmentArg,
    pub producer_props: Vec<(String, String)>,
    pub consumer_props: Vec<(String, String)>,
}

/// The raw baseline: a `BaseConsumer` (auto commit every `commit_interval_ms`,
/// cooperative-sticky and `fetch.queue.backoff.ms` like the framework) feeding a
/// `ThreadedProducer`, until `stop`.
pub fn run_raw_worker(
    s: &RawSettings,
    workload: &dyn Workload,
    stop: &AtomicBool,
    processed: &AtomicU64,
) -> anyhow::Result<()> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &s.brokers)
        .set("group.id", &s.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "true")
        .set("auto.commit.interval.ms", s.commit_interval_ms.to_string())
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // As the framework's consumers: librdkafka's default (1000 ms) idles a fast
        // consumer after each full queue, and the ceiling would not be one.
        .set("fetch.queue.backoff.ms", "10");
    if let Some(id) = &s.instance {
        cc.set("group.instance.id", id);
    }
    for (k, v) in &s.consumer_props {
        cc.set(k, v);
    }
    if cc
        .get("group.protocol")
        .is_none_or(|p| p.eq_ignore_ascii_case("classic"))
    {
        // Under KIP-848 (`group.protocol=consumer`) the broker owns these settings.
        cc.set("partition.assignment.strategy", s.assignment.librdkafka())
            .set("session.timeout.ms", s.session_timeout_ms.to_string());
    }
    let consumer: BaseConsumer = cc.create().context("raw consumer")?;
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &s.brokers);
    for (k, v) in &s.producer_props {
        pc.set(k, v);
    }
    let producer: ThreadedProducer<DefaultProducerContext> = pc.create().context("raw producer")?;
    consumer.subscribe(&[&s.input])?;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => eprintln!("raw worker: consumer error: {e}"),
            Some(Ok(m)) => {
                let mut outs = Vec::with_capacity(1);
                workload.raw_process(m.partition(), m.key(), m.payload(), &mut outs);
                for (partition, key, value) in outs.drain(..) {
                    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&s.output);
                    rec.partition = Some(partition);
                    rec.key = key;
                    rec.payload = value;
                    rec.timestamp = m.timestamp().to_millis();
                    exactly::framework::producer::enqueue(&producer, rec).context("raw produce")?;
                }
                processed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // Output first, then leave. Unsubscribing before the consumer is dropped matters: the
    // drop polls until closed, and a message it polls (and discards) would have its offset
    // stored and auto-committed without having been copied.
    producer.flush(Duration::from_secs(60))?;
    consumer.unsubscribe();
    drop(consumer);
    Ok(())
}

/// Totals over every member (and incarnation) of a run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Members started (including joiners and restarts).
    pub members_started: u32,
    /// Transactions (or offset commits, at-least-once) committed.
    pub commits: u64,
    /// Transactions aborted (a SIGKILLed worker's open transaction, aborted by the broker
    /// on timeout or by the fencing restart, is not counted here).
    pub aborts: u64,
    /// Time spent committing, seconds (sum over workers).
    pub commit_time_s: f64,
    /// Input records processed, replays included (in-process workers only).
    pub records_in: u64,
    /// Rebalance callbacks seen by the framework (assign and revoke).
    pub rebalance_callbacks: u64,
    /// Longest revoke callback (commit on revocation), ms.
    pub max_revoke_callback_ms: f64,
    /// SIGKILLs sent.
    pub kills: u32,
    /// Members that stopped on their own and were restarted.
    pub restarts_after_failure: u32,
    /// Why they stopped.
    pub worker_errors: Vec<String>,
    /// Peak RSS (VmHWM) of each worker process, MiB (process mode).
    pub process_peak_rss_mib: Vec<f64>,
}

/// Counters scraped from a worker process's Prometheus endpoint.
#[derive(Debug, Clone, Copy, Default)]
struct Scrape {
    commits: f64,
    aborts: f64,
    commit_sum_s: f64,
}

enum Member {
    Framework(Worker),
    Raw {
        stop: Arc<AtomicBool>,
        thread: JoinHandle<anyhow::Result<()>>,
    },
    Process {
        child: Child,
        metrics_port: Option<u16>,
        scrape: Scrape,
        peak_rss_mib: f64,
        last_scrape: Instant,
    },
}

impl Member {
    fn is_finished(&mut self) -> bool {
        match self {
            Member::Framework(w) => w.is_finished(),
            Member::Raw { thread, .. } => thread.is_finished(),
            Member::Process { child, .. } => !matches!(child.try_wait(), Ok(None)),
        }
    }
}

/// Everything a fleet needs to start members.
pub struct FleetConfig {
    pub kind: Kind,
    pub processes: bool,
    pub static_membership: bool,
    pub brokers: String,
    pub group: String,
    pub input: String,
    pub output: String,
    pub commit_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub assignment: AssignmentArg,
    pub producer_props: Vec<(String, String)>,
    pub consumer_props: Vec<(String, String)>,
    pub workload: Arc<dyn Workload>,
    /// Worker binary for framework kinds in process mode.
    pub worker_binary: PathBuf,
    /// The run's state dir: each member incarnation uses `w{slot}-{incarnation}` in it.
    pub state_root: PathBuf,
    /// Where process logs go.
    pub log_dir: PathBuf,
    /// The pipeline (for raw worker processes).
    pub pipeline: PipelineKind,
}

/// The members of one run.
pub struct Fleet {
    cfg: FleetConfig,
    slots: Vec<Option<Member>>,
    leaving: Vec<(usize, Member)>,
    incarnations: Vec<u32>,
    pub totals: Totals,
    raw_processed: Arc<AtomicU64>,
}

impl Fleet {
    pub fn new(cfg: FleetConfig, slots: usize) -> Fleet {
        Fleet {
            cfg,
            slots: (0..slots).map(|_| None).collect(),
            leaving: Vec::new(),
            incarnations: vec![0; slots],
            totals: Totals::default(),
            raw_processed: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn is_running(&self, slot: usize) -> bool {
        self.slots[slot].is_some()
    }

    fn instance_id(&self, slot: usize) -> Option<String> {
        self.cfg.static_membership.then(|| format!("w{slot}"))
    }

    /// The state dir of the incarnation of `slot` being started: empty, so that it
    /// restores its partitions' state from the changelog, as a new machine would (and
    /// never shares a store with a predecessor that is still closing it).
    fn state_dir(&self, slot: usize) -> PathBuf {
        self.cfg
            .state_root
            .join(format!("w{slot}-{}", self.incarnations[slot]))
    }

    /// Starts a member in `slot`.
    pub fn start(&mut self, slot: usize) -> anyhow::Result<()> {
        let member = if self.cfg.processes {
            self.spawn_process(slot)?
        } else {
            match self.cfg.kind {
                Kind::Framework(g) => self.spawn_worker(slot, g)?,
                Kind::Raw => self.spawn_raw_thread(slot)?,
            }
        };
        self.incarnations[slot] += 1;
        self.totals.members_started += 1;
        self.slots[slot] = Some(member);
        Ok(())
    }

    fn framework_config(&self, slot: usize, g: Guarantee) -> Config {
        let c = &self.cfg;
        let mut config = Config::new(&c.group, &c.brokers)
            .with_guarantee(g)
            .with_commit_interval(Duration::from_millis(c.commit_interval_ms))
            .with_session_timeout(Duration::from_millis(c.session_timeout_ms))
            .with_assignment(c.assignment.framework())
            .with_state_dir(self.state_dir(slot));
        if let Some(id) = self.instance_id(slot) {
            config = config.with_group_instance_id(id);
        }
        for (k, v) in &c.producer_props {
            config = config.with_producer_property(k, v);
        }
        for (k, v) in &c.consumer_props {
            config = config.with_consumer_property(k, v);
        }
        config
    }

    fn spawn_worker(&self, slot: usize, g: Guarantee) -> anyhow::Result<Member> {
        let pipeline = self
            .cfg
            .workload
            .pipeline(&self.cfg.input, &self.cfg.output);
        let worker = Runtime::new(self.framework_config(slot, g)).spawn(pipeline)?;
        Ok(Member::Framework(worker))
    }

    fn raw_settings(&self, slot: usize) -> RawSettings {
        let c = &self.cfg;
        RawSettings {
            pipeline: c.pipeline,
            brokers: c.brokers.clone(),
            group: c.group.clone(),
            input: c.input.clone(),
            output: c.output.clone(),
            instance: self.instance_id(slot),
            commit_interval_ms: c.commit_interval_ms,
            session_timeout_ms: c.session_timeout_ms,
            assignment: c.assignment,
            producer_props: c.producer_props.clone(),
            consumer_props: c.consumer_props.clone(),
        }
    }

    fn spawn_raw_thread(&self, slot: usize) -> anyhow::Result<Member> {
        let settings = self.raw_settings(slot);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, processed, workload) = (
            stop.clone(),
            self.raw_processed.clone(),
            self.cfg.workload.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("raw-worker-{slot}"))
            .spawn(move || run_raw_worker(&settings, &*workload, &s, &processed))?;
        Ok(Member::Raw { stop, thread })
    }

    fn spawn_process(&self, slot: usize) -> anyhow::Result<Member> {
        let c = &self.cfg;
        std::fs::create_dir_all(&c.log_dir)?;
        let log = c.log_dir.join(format!(
            "{}-w{slot}-{}.log",
            c.group, self.incarnations[slot]
        ));
        let file = std::fs::File::create(&log)?;
        let mut cmd;
        let mut metrics_port = None;
        match c.kind {
            Kind::Framework(g) => {
                cmd = Command::new(&c.worker_binary);
                let guarantee = match g {
                    Guarantee::ExactlyOnce => "exactly_once",
                    Guarantee::AtLeastOnce => "at_least_once",
                    Guarantee::AutoCommit => "auto_commit",
                };
                cmd.args(["--brokers", &c.brokers, "--group", &c.group])
                    .args(["--input", &c.input, "--output", &c.output])
                    .args(["--guarantee", guarantee])
                    .args(["--commit-interval-ms", &c.commit_interval_ms.to_string()])
                    .args(["--session-timeout-ms", &c.session_timeout_ms.to_string()])
                    .args(c.workload.process_args(&self.state_dir(slot)))
                    .env("EXACTLY_ASSIGNMENT", c.assignment.librdkafka());
                if let Some(id) = self.instance_id(slot) {
                    cmd.args(["--instance-id", &id]);
                }
                let port = free_port()?;
                cmd.args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
                metrics_port = Some(port);
                // The examples take raw librdkafka properties from the environment (all
                // clients).
                for (k, v) in c.producer_props.iter().chain(&c.consumer_props) {
                    let var = format!(
                        "EXACTLY_LIBRDKAFKA_{}",
                        k.to_ascii_uppercase().replace('.', "_")
                    );
                    cmd.env(var, v);
                }
            }
            Kind::Raw => {
                let s = self.raw_settings(slot);
                cmd = Command::new(std::env::current_exe()?);
                cmd.arg("--raw-worker").arg(serde_json::to_string(&s)?);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start a worker process (log: {})", log.display()))?;
        Ok(Member::Process {
            child,
            metrics_port,
            scrape: Scrape::default(),
            peak_rss_mib: 0.0,
            last_scrape: Instant::now(),
        })
    }

    /// Asks the member in `slot` to commit, leave the group and stop (without waiting).
    pub fn leave(&mut self, slot: usize) {
        let Some(mut m) = self.slots[slot].take() else {
            return;
        };
        match &mut m {
            Member::Framework(w) => w.stop(),
            Member::Raw { stop, .. } => stop.store(true, Ordering::Relaxed),
            Member::Process {
                child,
                metrics_port,
                scrape,
                peak_rss_mib,
                ..
            } => {
                sample_process(child.id(), *metrics_port, scrape, peak_rss_mib);
                // SAFETY: kill(2) on our own child's pid.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGTERM);
                }
            }
        }
        self.leaving.push((slot, m));
    }

    /// SIGKILLs the process in `slot` and starts a new one in its place.
    pub fn kill_restart(&mut self, slot: usize) -> anyhow::Result<()> {
        if let Some(Member::Process {
            mut child,
            metrics_port,
            mut scrape,
            mut peak_rss_mib,
            ..
        }) = self.slots[slot].take()
        {
            sample_process(child.id(), metrics_port, &mut scrape, &mut peak_rss_mib);
            let _ = child.kill();
            let _ = child.wait();
            self.totals.kills += 1;
            self.account_process(scrape, peak_rss_mib);
        }
        self.start(slot)
    }

    fn account_process(&mut self, scrape: Scrape, peak_rss_mib: f64) {
        self.totals.commits += scrape.commits as u64;
        self.totals.aborts += scrape.aborts as u64;
        self.totals.commit_time_s += scrape.commit_sum_s;
        self.totals.process_peak_rss_mib.push(peak_rss_mib);
    }

    /// Ends a finished member: its final counters, and its error if it failed.
    fn retire(&mut self, slot: usize, member: Member, expected: bool) {
        let outcome: Result<(), String> = match member {
            Member::Framework(w) => {
                let s = w.stats();
                self.totals.commits += s.commits;
                self.totals.aborts += s.aborts;
                self.totals.commit_time_s += s.commit_time.as_secs_f64();
                self.totals.records_in += s.records_in;
                self.totals.rebalance_callbacks += s.rebalances;
                self.totals.max_revoke_callback_ms = self
                    .totals
                    .max_revoke_callback_ms
                    .max(s.max_rebalance_pause.as_secs_f64() * 1000.0);
                w.join().map_err(|e| e.to_string())
            }
            Member::Raw { thread, .. } => match thread.join() {
                Ok(r) => r.map_err(|e| format!("{e:#}")),
                Err(_) => Err("raw worker panicked".into()),
            },
            Member::Process {
                mut child,
                scrape,
                peak_rss_mib,
                ..
            } => {
                let status = child.wait();
                self.account_process(scrape, peak_rss_mib);
                match status {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("worker process w{slot} exited with {s}")),
                    Err(e) => Err(format!("worker process w{slot}: {e}")),
                }
            }
        };
        if let Err(e) = outcome {
            self.totals.worker_errors.push(format!("w{slot}: {e}"));
        } else if !expected {
            self.totals
                .worker_errors
                .push(format!("w{slot}: stopped without being asked"));
        }
    }

    /// Housekeeping, called often: retires members that have left, restarts members that
    /// stopped on their own, samples worker processes (RSS, counters).
    pub fn tick(&mut self) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.leaving.len() {
            if self.leaving[i].1.is_finished() {
                let (slot, m) = self.leaving.swap_remove(i);
                self.retire(slot, m, true);
            } else {
                i += 1;
            }
        }
        for slot in 0..self.slots.len() {
            let finished = match self.slots[slot].as_mut() {
                Some(m) => m.is_finished(),
                None => false,
            };
            if finished {
                let m = self.slots[slot].take().expect("checked above");
                self.retire(slot, m, false);
                self.totals.restarts_after_failure += 1;
                self.start(slot)?;
                continue;
            }
            if let Some(Member::Process {
                child,
                metrics_port,
                scrape,
                peak_rss_mib,
                last_scrape,
            }) = self.slots[slot].as_mut()
            {
                if let Some(hwm) = vm_mib(Some(child.id()), "VmHWM") {
                    *peak_rss_mib = peak_rss_mib.max(hwm);
                }
                if last_scrape.elapsed() >= Duration::from_millis(500) {
                    *last_scrape = Instant::now();
                    sample_process(child.id(), *metrics_port, scrape, peak_rss_mib);
                }
            }
        }
        Ok(())
    }

    /// Every member leaves; waits until all have stopped.
    pub fn stop_all(&mut self, deadline: Duration) -> anyhow::Result<()> {
        for slot in 0..self.slots.len() {
            self.leave(slot);
        }
        let give_up = Instant::now() + deadline;
        while !self.leaving.is_empty() {
            self.tick()?;
            if Instant::now() > give_up {
                anyhow::bail!(
                    "{} member(s) did not stop within {deadline:?}",
                    self.leaving.len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Never leave worker processes behind (e.g. after an error).
        for m in self
            .slots
            .iter_mut()
            .flatten()
            .chain(self.leaving.iter_mut().map(|(_, m)| m))
        {
            match m {
                Member::Process { child, .. } => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Member::Framework(w) => w.stop(),
                Member::Raw { stop, .. } => stop.store(true, Ordering::Relaxed),
            }
        }
        let _ = std::fs::remove_dir_all(&self.cfg.state_root);
    }
}

fn sample_process(pid: u32, port: Option<u16>, scrape: &mut Scrape, peak_rss_mib: &mut f64) {
    if let Some(hwm) = vm_mib(Some(pid), "VmHWM") {
        *peak_rss_mib = peak_rss_mib.max(hwm);
    }
    if let Some(s) = port.and_then(scrape_metrics) {
        *scrape = s;
    }
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads a worker process's counters from its Prometheus endpoint.
fn scrape_metrics(port: u16) -> Option<Scrape> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let value = |name: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Some(Scrape {
        commits: value("exactly_transactions_committed_total"),
        aborts: value("exactly_transactions_aborted_total"),
        commit_sum_s: value("exactly_commit_latency_seconds_sum"),
    })
}
