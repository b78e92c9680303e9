//! Measuring: reading outputs back with their append times, the figures derived from them,
//! a `metrics` recorder for the framework's commit-latency histogram, and RSS.

use crate::group::GroupView;
use crate::workload::{OutRecord, Workload};
use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Wall-clock milliseconds since the epoch (the unit of Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Summaries

/// p50 / p99 / max / mean of a sample, in ms.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// A histogram of durations recorded in microseconds.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// Summarises a microsecond histogram in ms.
pub fn summarize_hist(h: &Histogram<u64>) -> Option<Summary> {
    (!h.is_empty()).then(|| Summary {
        count: h.len(),
        p50: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        max: h.max() as f64 / 1000.0,
        mean: h.mean() / 1000.0,
    })
}

/// Summarises millisecond values.
pub fn summarize_ms(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
    let mut h = micros_histogram();
    for v in values {
        h.saturating_record((v.max(0.0) * 1000.0).round() as u64);
    }
    summarize_hist(&h)
}

// ---------------------------------------------------------------------------------------
// The framework's histograms, through the `metrics` facade

/// Captures `exactly_commit_latency_seconds` and `exactly_rebalance_pause_seconds` (the
/// time spent in the revoke callback) of in-process workers. Everything else is dropped.
#[derive(Default)]
pub struct FrameworkHistograms {
    pub commit: Arc<Mutex<Option<Histogram<u64>>>>,
    pub revoke: Arc<Mutex<Option<Histogram<u64>>>>,
}

struct Sink(Arc<Mutex<Option<Histogram<u64>>>>);

impl metrics::HistogramFn for Sink {
    fn record(&self, seconds: f64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let h = g.get_or_insert_with(micros_histogram);
        h.saturating_record((seconds.max(0.0) * 1e6).round() as u64);
    }
}

struct Recorder(&'static FrameworkHistograms);

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        match key.name() {
            "exactly_commit_latency_seconds" => {
                metrics::Histogram::from_arc(Arc::new(Sink(self.0.commit.clone())))
            }
            "exactly_rebalance_pause_seconds" => {
                metrics::Histogram::from_arc(Arc::new(Sink(self.0.revoke.clone())))
            }
            _ => metrics::Histogram::noop(),
        }
    }
}

/// The process-wide histograms (the recorder is installed on first use).
pub fn framework_histograms() -> &'static FrameworkHistograms {
    static H: OnceLock<&'static FrameworkHistograms> = OnceLock::new();
    H.get_or_init(|| {
        let h: &'static FrameworkHistograms = Box::leak(Box::default());
        if metrics::set_global_recorder(Recorder(h)).is_err() {
            eprintln!("warning: a metrics recorder is already installed; commit latency percentiles will be missing");
        }
        h
    })
}

impl FrameworkHistograms {
    /// Empties both histograms (at the start of a run).
    pub fn reset(&self) {
        *self.commit.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.revoke.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// (commit latency, revoke callback time).
    pub fn take(&self) -> (Option<Summary>, Option<Summary>) {
        let get = |m: &Mutex<Option<Histogram<u64>>>| {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .and_then(|h| summarize_hist(&h))
        };
        (get(&self.commit), get(&self.revoke))
    }
}

// ---------------------------------------------------------------------------------------
// Memory

/// A `Vm*` field of `/proc/<pid>/status` (`None`: this process) in MiB.
pub use exactly_testkit::process::vm_mib;

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (Linux ≥ 4.0).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---------------------------------------------------------------------------------------
// Reading an output back

/// Reads `topic` from the beginning to its end under read_committed, keeping for each
/// record its partition, its append time, and the input id it copies or the count it
/// carries.
pub fn read_output(
    brokers: &str,
    topic: &str,
    workload: &dyn Workload,
    deadline: Duration,
) -> anyhow::Result<Vec<OutRecord>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "exactly-bench-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("reader")?;
    let ends = high_watermarks(&c, topic)?;
    let mut tpl = TopicPartitionList::new();
    for (p, _) in &ends {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let give_up = Instant::now() + deadline;
    let mut out = Vec::with_capacity(ends.iter().map(|(_, e)| *e as usize).sum());
    let mut since_check = 0u32;
    let mut last_offsets = vec![-1i64; ends.len()];
    loop {
        let polled = c.poll(Duration::from_millis(100));
        let idle = polled.is_none();
        if let Some(m) = polled {
            let m = m.with_context(|| format!("reading {topic}"))?;
            let append_ms = match m.timestamp() {
                Timestamp::LogAppendTime(t) => t,
                other => bail!("{topic}: expected LogAppendTime timestamps, got {other:?}"),
            };
            let p = m.partition();
            if let Some(last) = last_offsets.get_mut(p as usize) {
                *last = m.offset();
            }
            out.push(OutRecord {
                partition: p,
                append_ms,
                id: workload.input_id(p, m.key(), m.payload()),
                count: workload.count_of(m.key(), m.payload()),
            });
        }
        since_check += 1;
        if !idle && since_check < 20_000 {
            continue;
        }
        since_check = 0;
        let positions = c.position()?;
        let behind = ends.iter().any(|(p, hw)| {
            let pos = match positions.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            pos < *hw && *hw > 0
        });
        if !behind {
            break;
        }
        if Instant::now() > give_up {
            bail!("{topic}: still behind the high watermark after {deadline:?} (a transaction left open?)");
        }
    }
    // Records of a partition arrive in offset order; sort by partition, keeping that order.
    out.sort_by_key(|r| r.partition);
    Ok(out)
}

/// `(partition, high watermark)` of every partition of `topic`.
pub fn high_watermarks(c: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .with_context(|| format!("topic {topic} not found"))?;
    let mut ends = Vec::new();
    for p in t.partitions() {
        let (_, hw) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        ends.push((p.id(), hw));
    }
    ends.sort_unstable();
    Ok(ends)
}

// ---------------------------------------------------------------------------------------
// Figures derived from append times

/// A forced rebalance (or, in the steady run, the moment one would have happened).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Seconds since the group first settled (the start of the throughput window).
    pub t_s: f64,
    /// `join`, `leave`, `kill-restart`, or `none` (steady run: where one would have been).
    pub kind: String,
    /// Wall-clock ms (not serialised: t_s is relative).
    #[serde(skip)]
    pub at_ms: i64,
    /// `backlog` or `live` (the phase whose records measure it); `between` phases, or
    /// `... (end, not counted)` less than T/2 before the end of its phase: not measured.
    pub phase: String,
    /// From the event to the first stable, complete assignment that differs from the one
    /// before it, ms (the group is sampled every 100 ms).
    pub rebalance_ms: Option<f64>,
    /// Join: from the event until the group has one more member; leave: one fewer, ms
    /// (sampled every 100 ms; a leave that takes about `session.timeout.ms` was not a
    /// clean LeaveGroup).
    pub membership_ms: Option<f64>,
    /// Input partitions whose owner changed.
    pub moved_partitions: Vec<i32>,
    /// The pause of each moved partition, ms (same order).
    pub moved_pause_ms: Vec<f64>,
    /// The longest pause of the moved partitions (of all partitions when none moved), ms.
    pub pause_ms: Option<f64>,
    /// The longest gap of the partitions that did not move, ms.
    pub retained_pause_ms: Option<f64>,
}

/// Per-partition append times of one phase, in offset order.
pub type PartitionTimes = Vec<Vec<i64>>;

/// Splits an output into per-partition append-time lists for records caused by the
/// backlog (`from_backlog`, see `Workload::backlog_filter`) and live records (the others).
pub fn split_phases(
    out: &[OutRecord],
    partitions: i32,
    from_backlog: impl Fn(&OutRecord) -> bool,
) -> (PartitionTimes, PartitionTimes) {
    let mut backlog = vec![Vec::new(); partitions as usize];
    let mut live = vec![Vec::new(); partitions as usize];
    for r in out {
        let Some(slot) = usize::try_from(r.partition)
            .ok()
            .filter(|p| *p < backlog.len())
        else {
            continue;
        };
        if from_backlog(r) {
            backlog[slot].push(r.append_ms);
        } else {
            live[slot].push(r.append_ms);
        }
    }
    (backlog, live)
}

/// First and last append time over all partitions.
pub fn span(times: &PartitionTimes) -> Option<(i64, i64)> {
    let first = times.iter().filter_map(|t| t.first()).min()?;
    let last = times.iter().filter_map(|t| t.last()).max()?;
    Some((*first, *last))
}

/// Records per second in `bin_ms` bins from `start_ms` to `end_ms`.
pub fn series(times: &PartitionTimes, start_ms: i64, end_ms: i64, bin_ms: i64) -> Vec<(f64, f64)> {
    let bins = ((end_ms - start_ms) / bin_ms + 1).max(1) as usize;
    let mut counts = vec![0u64; bins];
    for t in times.iter().flatten() {
        if *t >= start_ms && *t <= end_ms {
            counts[((t - start_ms) / bin_ms) as usize] += 1;
        }
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let t0 = i as i64 * bin_ms;
            // The last bin may be partial.
            let width = (end_ms - start_ms - t0 + 1).clamp(1, bin_ms);
            (t0 as f64 / 1000.0, *c as f64 * 1000.0 / width as f64)
        })
        .collect()
}

/// How long one partition stopped after an event: the longest gap between consecutive
/// append times whose later record falls in `(event, until]`, or, if the partition is
/// still stopped at `until`, the time since its last record. `None` when the partition
/// had not started by the event.
pub fn gap_after(ts: &[i64], event_ms: i64, until_ms: i64) -> Option<i64> {
    if ts.first().is_none_or(|first| *first > event_ms) {
        return None;
    }
    let start = ts.partition_point(|t| *t <= event_ms);
    let end = ts.partition_point(|t| *t <= until_ms);
    let mut gap = 0i64;
    for k in start.max(1)..end {
        gap = gap.max(ts[k] - ts[k - 1]);
    }
    if end < ts.len() && end > 0 {
        gap = gap.max(until_ms - ts[end - 1]);
    }
    Some(gap)
}

/// Fills in each event's phase, moved partitions and pauses, from the append times of the
/// two phases and the group's assignment history.
pub fn analyse_events(
    events: &mut [Event],
    history: &[GroupView],
    backlog: &PartitionTimes,
    live: &PartitionTimes,
    backlog_end_ms: i64,
    min_window_ms: i64,
) {
    let live_span = span(live);
    let ats: Vec<i64> = events.iter().map(|e| e.at_ms).collect();
    for (i, e) in events.iter_mut().enumerate() {
        let te = e.at_ms;
        let next = ats.get(i + 1).copied().unwrap_or(i64::MAX);
        // Assignments: the last complete one before the event, the first stable one after
        // it that differs, and the last stable one before the next event.
        let before = history.iter().rfind(|v| v.at_ms <= te && v.complete());
        let stable_after =
            |v: &&GroupView| v.at_ms > te && v.at_ms < next && v.complete() && v.state == "Stable";
        if let Some(first) = history
            .iter()
            .filter(stable_after)
            .find(|v| before.is_none_or(|b| b.owners != v.owners))
        {
            e.rebalance_ms = Some((first.at_ms - te) as f64);
        }
        let after = history.iter().rfind(stable_after);
        if let Some(members) = history.iter().rfind(|v| v.at_ms <= te).map(|v| v.members) {
            let changed = |v: &GroupView| match e.kind.as_str() {
                "join" => v.members > members,
                "leave" => v.members < members,
                _ => false,
            };
            e.membership_ms = history
                .iter()
                .filter(|v| v.at_ms > te && v.at_ms < next)
                .find(|v| changed(v))
                .map(|v| (v.at_ms - te) as f64);
        }
        let moved: Vec<usize> = match (before, after) {
            (Some(b), Some(a)) => (0..b.owners.len())
                .filter(|p| b.owners[*p] != a.owners.get(*p).cloned().flatten())
                .collect(),
            _ => Vec::new(),
        };
        e.moved_partitions = moved.iter().map(|p| *p as i32).collect();
        let (times, until) = if te < backlog_end_ms {
            e.phase = "backlog".into();
            (backlog, next.min(backlog_end_ms))
        } else if let Some((_, l1)) = live_span.filter(|(l0, l1)| te >= *l0 && te < *l1) {
            e.phase = "live".into();
            (live, next.min(l1))
        } else {
            e.phase = "between".into();
            continue;
        };
        if until - te < min_window_ms {
            // Too close to the end of its phase for the pause to be seen whole.
            e.phase = format!("{} (end, not counted)", e.phase);
            continue;
        }
        let gaps: Vec<Option<i64>> = times.iter().map(|ts| gap_after(ts, te, until)).collect();
        e.moved_pause_ms = moved
            .iter()
            .filter_map(|p| gaps.get(*p).copied().flatten())
            .map(|g| g as f64)
            .collect();
        let retained = gaps
            .iter()
            .enumerate()
            .filter(|(p, _)| !moved.contains(p))
            .filter_map(|(_, g)| *g)
            .max();
        e.retained_pause_ms = retained.map(|g| g as f64);
        e.pause_ms = if moved.is_empty() {
            gaps.iter().flatten().max().map(|g| *g as f64)
        } else {
            e.moved_pause_ms.iter().copied().reduce(f64::max)
        };
    }
}
