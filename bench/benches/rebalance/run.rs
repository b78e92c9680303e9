//! One run, in its own process (so that its peak RSS is its own): start the group, drain
//! the backlog while forcing rebalances, feed live records for latency, stop, read the
//! output back, verify, and derive every figure.

use crate::fleet::{Fleet, FleetConfig, Kind};
use crate::group::{describe, GroupView};
use crate::measure::{self, now_ms, summarize_ms, vm_mib, Event};
use crate::report::{GroupSample, RunResult, SeriesPoint};
use crate::workload::Workload;
use crate::{Args, RunName};
use anyhow::{bail, Context as _};
use exactly::Guarantee;
use exactly_testkit as testkit;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a run needs to know.
pub struct Ctx {
    pub args: Args,
    pub brokers: String,
    pub workload: Arc<dyn Workload>,
    pub input: String,
    pub output: String,
    pub group: String,
    /// Input ids `0..backlog` are preloaded (in one transaction, committed once the group
    /// has settled).
    pub backlog: u64,
    pub out_dir: PathBuf,
    pub worker_binary: PathBuf,
}

impl Ctx {
    /// The internal topics the group consumes (repartition hops), full names.
    fn hops(&self) -> Vec<String> {
        self.workload
            .pipeline(&self.input, &self.output)
            .internal_topics()
            .into_iter()
            .map(|t| format!("{}-{t}", self.group))
            .collect()
    }

    /// The topic whose partition `p` is read by the task writing output partition `p`: the
    /// input, or the last repartition hop (the sink partitions by key like the hop). Its
    /// assignment tells which output partitions a rebalance moved.
    fn owners_topic(&self) -> String {
        self.hops().pop().unwrap_or_else(|| self.input.clone())
    }
}

pub fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>27} [{elapsed_precise}] {bar:30.cyan/blue} {human_pos:>9}/{human_len:9} {msg}",
    )
    .expect("template")
    .progress_chars("=> ")
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    key: &[u8],
    value: &[u8],
    timestamp: Option<i64>,
) -> anyhow::Result<()> {
    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(value);
    rec.timestamp = timestamp;
    exactly::framework::producer::enqueue(producer, rec).context("produce input")
}

/// End offset of each input partition when ids `0..ids` are in the topic (id `i` is in
/// partition `i % partitions`).
fn input_ends(ids: u64, partitions: i32) -> Vec<i64> {
    let p = partitions as u64;
    (0..p)
        .map(|i| (ids / p + u64::from(i < ids % p)) as i64)
        .collect()
}

/// The group's committed offsets on the input, per partition (-1: none).
fn committed(c: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok((0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect())
}

/// The forced-rebalance schedule of a phase: the first event min(1 s, T/2) after the phase
/// starts, then one every T; a phase of D seconds sees about D/T of them.
struct Schedule {
    every: Option<Duration>,
    /// False in the steady run: the events are only noted (to measure the floor).
    act: bool,
    next: Option<Instant>,
    count: u32,
}

impl Schedule {
    fn start(&mut self, now: Instant) {
        self.next = self
            .every
            .map(|every| now + (every / 2).min(Duration::from_secs(1)));
    }
}

/// The state of a run while its workers are up.
struct Running<'a> {
    ctx: &'a Ctx,
    fleet: Fleet,
    schedule: Schedule,
    events: Vec<Event>,
    /// Follows the group: committed offsets and assignment.
    client: BaseConsumer,
    /// [`Ctx::hops`].
    hops: Vec<String>,
    /// [`Ctx::owners_topic`].
    owners_topic: String,
    history: Vec<GroupView>,
    bar: ProgressBar,
}

impl Running<'_> {
    /// Runs the schedule and the housekeeping until the group has committed `ends`, `also`
    /// returns true, and the group has consumed its repartition hops.
    fn until_committed(
        &mut self,
        ends: &[i64],
        mut also: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let args = &self.ctx.args;
        let mut last_check = Instant::now() - Duration::from_secs(1);
        let mut last_progress = (0i64, Instant::now());
        loop {
            self.fleet.tick()?;
            let now = Instant::now();
            if let Some(at) = self.schedule.next.filter(|at| now >= *at) {
                self.force_rebalance()?;
                self.schedule.next = self.schedule.every.map(|every| at + every);
            }
            if now.duration_since(last_check) >= Duration::from_millis(100) {
                last_check = now;
                self.watch_group()?;
                let c = committed(&self.client, &self.ctx.input, args.partitions)?;
                let done: i64 = c.iter().map(|o| (*o).max(0)).sum();
                self.bar.set_position(done as u64);
                if done != last_progress.0 {
                    last_progress = (done, now);
                } else if now.duration_since(last_progress.1) > Duration::from_secs(120) {
                    bail!(
                        "no progress for 120 s: committed {c:?}, expected {ends:?}; worker errors: {:?}",
                        self.fleet.totals.worker_errors
                    );
                }
                if c.iter().zip(ends).all(|(c, e)| c >= e) && also() && self.hops_consumed()? {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the group has consumed everything in its repartition hops (none: true).
    fn hops_consumed(&self) -> anyhow::Result<bool> {
        for hop in &self.hops {
            if !testkit::caught_up(&self.ctx.brokers, &self.ctx.group, hop)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Samples the group (its history keeps the changes).
    fn watch_group(&mut self) -> anyhow::Result<bool> {
        let args = &self.ctx.args;
        let view = describe(
            &self.client,
            &self.ctx.group,
            &self.owners_topic,
            args.partitions,
        )?;
        let settled = view.settled(args.workers);
        if self.history.last().is_none_or(|v| !v.same(&view)) {
            self.history.push(view);
        }
        Ok(settled)
    }

    /// Waits until every worker is a member with partitions (the input is still invisible:
    /// its transaction is open). Gives up after `deadline` (the run goes on; the JSON says
    /// `settled: false`).
    fn until_settled(&mut self, deadline: Duration) -> anyhow::Result<bool> {
        let give_up = Instant::now() + deadline;
        while Instant::now() < give_up {
            self.fleet.tick()?;
            if self.watch_group()? {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(false)
    }

    fn force_rebalance(&mut self) -> anyhow::Result<()> {
        let args = &self.ctx.args;
        let kind = if !self.schedule.act {
            "none"
        } else if args.kill_restart {
            let slot = self.schedule.count as usize % args.workers;
            self.fleet.kill_restart(slot)?;
            "kill-restart"
        } else if self.fleet.is_running(args.workers) {
            self.fleet.leave(args.workers);
            "leave"
        } else {
            self.fleet.start(args.workers)?;
            "join"
        };
        self.schedule.count += 1;
        self.events.push(Event {
            kind: kind.to_string(),
            at_ms: now_ms(),
            ..Event::default()
        });
        Ok(())
    }
}

/// Reads the output under read_committed from its current end and notes when each live
/// record becomes visible: `seen[id - first]` = wall ms (-1: not seen).
fn visible_reader(
    ctx: &Ctx,
    first: u64,
    count: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<Vec<i64>>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &ctx.brokers)
        .set("group.id", "exactly-bench-visible")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let ends = measure::high_watermarks(&c, &ctx.output)?;
    let mut tpl = TopicPartitionList::new();
    for (p, hw) in &ends {
        tpl.add_partition_offset(&ctx.output, *p, Offset::Offset(*hw))?;
    }
    c.assign(&tpl)?;
    let workload = ctx.workload.clone();
    Ok(std::thread::spawn(move || {
        let mut seen = vec![-1i64; count as usize];
        let mut missing = count;
        while missing > 0 && !stop.load(Ordering::Relaxed) {
            let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
                continue;
            };
            let at = now_ms();
            let id = workload.input_id(m.partition(), m.key(), m.payload());
            let slot = id
                .and_then(|id| id.checked_sub(first))
                .and_then(|i| seen.get_mut(i as usize));
            if let Some(slot) = slot.filter(|s| **s < 0) {
                *slot = at;
                missing -= 1;
            }
        }
        seen
    }))
}

/// The live-phase producer, connected ahead of time so that its start-up is not counted
/// as latency.
fn feeder_producer(ctx: &Ctx) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &ctx.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()?;
    producer
        .client()
        .fetch_metadata(Some(&ctx.input), Duration::from_secs(10))?;
    Ok(producer)
}

/// Feeds `count` live records (ids from `first`) at `rate` per second from a thread;
/// returns their timestamps (CreateTime, set at send).
fn feed(
    ctx: &Ctx,
    producer: ThreadedProducer<DefaultProducerContext>,
    first: u64,
    count: u64,
) -> std::thread::JoinHandle<anyhow::Result<Vec<i64>>> {
    let (topic, workload) = (ctx.input.clone(), ctx.workload.clone());
    let (partitions, rate) = (ctx.args.partitions, ctx.args.live_rate.max(1));
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut stamps = Vec::with_capacity(count as usize);
        for i in 0..count {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let (p, k, v) = workload.input(first + i, partitions);
            let ts = now_ms();
            send(&producer, &topic, p, &k, &v, Some(ts))?;
            stamps.push(ts);
        }
        producer.flush(Duration::from_secs(60))?;
        Ok(stamps)
    })
}

/// Writes input ids `0..backlog` in one transaction, left open.
fn preload(
    ctx: &Ctx,
    bar: &ProgressBar,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &ctx.brokers)
        .set("transactional.id", format!("{}-preload", ctx.group))
        .set("transaction.timeout.ms", "300000")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    producer.begin_transaction()?;
    for id in 0..ctx.backlog {
        let (partition, key, value) = ctx.workload.input(id, ctx.args.partitions);
        send(&producer, &ctx.input, partition, &key, &value, None)?;
        if id % 20_000 == 0 {
            bar.set_position(id);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    bar.set_position(ctx.backlog);
    Ok(producer)
}

fn commit_preload(producer: &ThreadedProducer<DefaultProducerContext>) -> anyhow::Result<()> {
    producer
        .commit_transaction(Duration::from_secs(60))
        .context("committing the preloaded input")
}

/// The group history with member ids replaced by small numbers, times relative to `w0`.
fn history_for_report(history: &[GroupView], w0: i64) -> Vec<GroupSample> {
    let mut ids: Vec<String> = Vec::new();
    history
        .iter()
        .map(|v| GroupSample {
            t_s: (v.at_ms - w0) as f64 / 1000.0,
            state: v.state.clone(),
            members: v.members,
            owners: v
                .owners
                .iter()
                .map(|o| {
                    o.as_ref().map(|id| match ids.iter().position(|x| x == id) {
                        Some(i) => i as u32,
                        None => {
                            ids.push(id.clone());
                            ids.len() as u32 - 1
                        }
                    })
                })
                .collect(),
        })
        .collect()
}

/// Runs `spec` and measures it.
pub fn run_one(ctx: &Ctx, spec: RunName) -> anyhow::Result<RunResult> {
    let args = &ctx.args;
    let kind = spec.kind();
    let backlog = ctx.backlog;
    let fleet = Fleet::new(
        FleetConfig {
            kind,
            processes: args.kill_restart,
            static_membership: args.static_membership,
            brokers: ctx.brokers.clone(),
            group: ctx.group.clone(),
            input: ctx.input.clone(),
            output: ctx.output.clone(),
            commit_interval_ms: args.commit_interval_ms,
            session_timeout_ms: args.session_timeout_ms,
            assignment: args.assignment,
            producer_props: args.producer_props.clone(),
            consumer_props: args.consumer_props.clone(),
            workload: ctx.workload.clone(),
            worker_binary: ctx.worker_binary.clone(),
            state_root: ctx.out_dir.join("state").join(&ctx.group),
            log_dir: ctx.out_dir.join("logs"),
            pipeline: args.pipeline,
        },
        args.workers + 1,
    );
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &ctx.brokers)
        .set("group.id", &ctx.group)
        .set("enable.auto.commit", "false")
        // read_uncommitted: an OffsetFetch that does not wait for pending transactional
        // offsets (the last committed ones are enough to follow progress).
        .set("isolation.level", "read_uncommitted")
        .create()?;
    let live_seconds = if spec.rebalances() {
        args.live_seconds
    } else {
        args.steady_live_seconds
    };
    let live = (live_seconds * args.live_rate as f64).round() as u64;
    let mut producer = (live > 0).then(|| feeder_producer(ctx)).transpose()?;
    let bar = ProgressBar::new(backlog)
        .with_style(bar_style())
        .with_prefix(spec.label());

    // The backlog, written in one transaction that stays open until the group has settled:
    // read_committed consumers (the framework's and the raw baseline's) see all of it at
    // once, so the throughput window starts with every worker in place.
    bar.set_message("preload");
    let preload_started = Instant::now();
    let loader = preload(ctx, &bar)?;
    let preload_seconds = preload_started.elapsed().as_secs_f64();

    measure::framework_histograms().reset();
    // Give the loader's memory back, so the peak RSS is the workers'.
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    let rss_before = vm_mib(None, "VmRSS");
    let rss_resettable = measure::reset_peak_rss();
    let every =
        (args.rebalance_every_s > 0.0).then(|| Duration::from_secs_f64(args.rebalance_every_s));
    let mut run = Running {
        ctx,
        fleet,
        schedule: Schedule {
            every,
            act: spec.rebalances(),
            next: None,
            count: 0,
        },
        events: Vec::new(),
        client,
        hops: ctx.hops(),
        owners_topic: ctx.owners_topic(),
        history: Vec::new(),
        bar,
    };
    run.bar.set_message("joining");
    run.bar.set_position(0);
    let started_ms = now_ms();
    let started = Instant::now();
    for slot in 0..args.workers {
        run.fleet.start(slot)?;
    }
    let settled = run.until_settled(Duration::from_secs(60))?;
    let settled_ms = now_ms();
    commit_preload(&loader)?;
    drop(loader);
    let w0 = now_ms();
    run.schedule.start(Instant::now());
    run.bar.set_message("backlog");
    run.until_committed(&input_ends(backlog, args.partitions), || true)?;

    // Live phase: records at a fixed rate, for end-to-end latency and precise pauses.
    let mut stamps = Vec::new();
    let mut seen = Vec::new();
    if let Some(producer) = producer.take() {
        run.bar.set_message("live");
        run.bar.set_length(backlog + live);
        let stop = Arc::new(AtomicBool::new(false));
        // Visibility is per input record: only for workloads that copy records.
        let reader = ctx
            .workload
            .copies_records()
            .then(|| visible_reader(ctx, backlog, live, stop.clone()))
            .transpose()?;
        let feeder = feed(ctx, producer, backlog, live);
        run.schedule.start(Instant::now());
        run.until_committed(&input_ends(backlog + live, args.partitions), || {
            feeder.is_finished()
        })?;
        stamps = feeder
            .join()
            .map_err(|_| anyhow::anyhow!("the feeder panicked"))??;
        if let Some(reader) = reader {
            // The visible reader may need a moment for the last commits.
            let give_up = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
            seen = reader
                .join()
                .map_err(|_| anyhow::anyhow!("the reader panicked"))?;
        }
    }
    run.bar.set_message("stopping");
    run.fleet.stop_all(Duration::from_secs(60))?;
    let run_seconds = started.elapsed().as_secs_f64();
    let peak_rss = if args.kill_restart {
        run.fleet
            .totals
            .process_peak_rss_mib
            .iter()
            .copied()
            .reduce(f64::max)
    } else if rss_resettable {
        vm_mib(None, "VmHWM")
    } else {
        None
    };
    let (commit_hist, revoke_hist) = measure::framework_histograms().take();

    run.bar.set_message("reading back");
    let out = measure::read_output(
        &ctx.brokers,
        &ctx.output,
        &*ctx.workload,
        Duration::from_secs(60 + args.session_timeout_ms / 1000),
    )?;
    let total_ids = backlog + live;
    let verification = ctx.workload.verify(total_ids, args.partitions, &out);
    run.bar.finish_with_message("done");

    // Throughput: the backlog between its commit and its last append. Copies count their
    // output records; other workloads the backlog's input records, and their series is
    // scaled to input records by the mean output records per input record.
    let from_backlog = ctx.workload.backlog_filter(backlog);
    let (backlog_t, live_t) = measure::split_phases(&out, args.partitions, from_backlog);
    let (_, b1) = measure::span(&backlog_t).context("no output")?;
    let window_outputs = backlog_t
        .iter()
        .map(|ts| ts.len() - ts.partition_point(|t| *t < w0))
        .sum::<usize>() as u64;
    let window_records = if ctx.workload.copies_records() {
        window_outputs
    } else {
        backlog
    };
    let scale = window_records as f64 / window_outputs.max(1) as f64;
    let drain_seconds = ((b1 - w0) as f64 / 1000.0).max(0.001);
    let series = measure::series(&backlog_t, w0, b1, args.bin_ms)
        .into_iter()
        .map(|(t_s, outputs_per_sec)| SeriesPoint {
            t_s,
            records_per_sec: outputs_per_sec * scale,
        })
        .collect();

    // Pauses: from the live phase when there is one (its input arrives at a fixed rate, so
    // a partition's append times are milliseconds apart unless it is stopped).
    let mut events = std::mem::take(&mut run.events);
    measure::analyse_events(
        &mut events,
        &run.history,
        &backlog_t,
        &live_t,
        b1,
        every.unwrap_or(Duration::from_secs(5)).as_millis() as i64 / 2,
    );
    for e in &mut events {
        e.t_s = (e.at_ms - w0) as f64 / 1000.0;
    }
    let pause_phase = if events.iter().any(|e| e.phase == "live") {
        "live"
    } else {
        "backlog"
    };
    let in_phase = || events.iter().filter(|e| e.phase == pause_phase);
    let pause = summarize_ms(in_phase().filter(|e| e.kind != "none").flat_map(|e| {
        if e.moved_partitions.is_empty() {
            e.pause_ms.into_iter().collect::<Vec<_>>()
        } else {
            e.moved_pause_ms.clone()
        }
    }));
    let retained = summarize_ms(in_phase().filter_map(|e| e.retained_pause_ms));
    let rebalance = summarize_ms(events.iter().filter_map(|e| e.rebalance_ms));

    // End-to-end latency of the live records (first copy of each).
    let mut firsts = vec![-1i64; live as usize];
    for r in &out {
        if let Some(i) =
            r.id.and_then(|id| id.checked_sub(backlog))
                .filter(|i| *i < live)
        {
            let slot = &mut firsts[i as usize];
            if *slot < 0 {
                *slot = r.append_ms;
            }
        }
    }
    let latency = |at: &[i64]| {
        summarize_ms(
            at.iter()
                .zip(&stamps)
                .filter(|(a, _)| **a >= 0)
                .map(|(a, s)| (a - s) as f64),
        )
    };
    let (e2e_append, e2e_visible) = (latency(&firsts), latency(&seen));

    let totals = run.fleet.totals.clone();
    let group_history = history_for_report(&run.history, w0);
    let eos = kind == Kind::Framework(Guarantee::ExactlyOnce);
    Ok(RunResult {
        name: spec.name().into(),
        label: spec.label().into(),
        guarantee: kind.label().into(),
        forced_rebalances: spec.rebalances() && every.is_some(),
        output_topic: ctx.output.clone(),
        group: ctx.group.clone(),
        backlog_records: backlog,
        window_records,
        drain_seconds,
        records_per_sec: window_records as f64 / drain_seconds,
        settled,
        startup_ms: (settled_ms - started_ms) as f64,
        preload_seconds,
        run_seconds,
        throughput_series: series,
        bin_ms: args.bin_ms,
        events,
        group_history,
        pause_phase: pause_phase.into(),
        pause_ms_p50: pause.map(|s| s.p50),
        pause_ms_p99: pause.map(|s| s.p99),
        pause_ms_max: pause.map(|s| s.max),
        pause_samples: pause.map_or(0, |s| s.count),
        retained_pause_ms_p50: retained.map(|s| s.p50),
        retained_pause_ms_p99: retained.map(|s| s.p99),
        retained_pause_ms_max: retained.map(|s| s.max),
        rebalance_ms_p50: rebalance.map(|s| s.p50),
        rebalance_ms_max: rebalance.map(|s| s.max),
        revoke_callback_ms_p50: revoke_hist.map(|s| s.p50),
        revoke_callback_ms_p99: revoke_hist.map(|s| s.p99),
        revoke_callback_ms_max: revoke_hist.map(|s| s.max),
        commits: totals.commits,
        aborts: totals.aborts,
        commit_ms_mean: (totals.commits > 0)
            .then(|| totals.commit_time_s * 1000.0 / totals.commits as f64),
        commit_ms_p50: commit_hist.map(|s| s.p50),
        commit_ms_p99: commit_hist.map(|s| s.p99),
        commit_ms_max: commit_hist.map(|s| s.max),
        commits_per_sec: (totals.commits > 0).then(|| totals.commits as f64 / run_seconds),
        live_records: live,
        e2e_append_ms_p50: e2e_append.map(|s| s.p50),
        e2e_append_ms_p99: e2e_append.map(|s| s.p99),
        e2e_append_ms_max: e2e_append.map(|s| s.max),
        e2e_visible_ms_p50: e2e_visible.map(|s| s.p50),
        e2e_visible_ms_p99: e2e_visible.map(|s| s.p99),
        e2e_visible_ms_max: e2e_visible.map(|s| s.max),
        e2e_samples: e2e_append.map_or(0, |s| s.count),
        peak_rss_mib: peak_rss,
        rss_before_run_mib: if args.kill_restart { None } else { rss_before },
        exactly_once_verified: eos.then(|| verification.is_exact()),
        verification,
        totals,
    })
}
