//! Counters of one worker, mirrored to the `metrics` facade under the names of
//! [`metric`](super::metric).

use super::metric;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of a worker (cheap atomics, shared with the worker thread).
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) aborts: AtomicU64,
    pub(crate) rebalances: AtomicU64,
    pub(crate) partitions: AtomicU64,
    pub(crate) commit_nanos: AtomicU64,
    pub(crate) max_pause_nanos: AtomicU64,
    pub(crate) restores: AtomicU64,
    pub(crate) restored_records: AtomicU64,
    pub(crate) restore_nanos: AtomicU64,
    pub(crate) duplicate_deliveries: AtomicU64,
    pub(crate) recoveries: AtomicU64,
    pub(crate) past_retention: AtomicU64,
    pub(crate) standby_partitions: AtomicU64,
    pub(crate) standby_lag: AtomicU64,
    /// `records_out` when the last cycle committed (for the committed-records counter).
    records_out_committed: AtomicU64,
}

/// A point-in-time copy of a worker's [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Input records processed (including ones later aborted and replayed).
    pub records_in: u64,
    /// Output records sent (including ones in aborted transactions).
    pub records_out: u64,
    /// Commit cycles that committed.
    pub commits: u64,
    /// Commit cycles that were aborted.
    pub aborts: u64,
    /// Rebalance callbacks seen (assign and revoke).
    pub rebalances: u64,
    /// Partitions assigned now.
    pub partitions: u64,
    /// Total time spent committing.
    pub commit_time: Duration,
    /// Longest time processing stopped in a revoke callback.
    pub max_rebalance_pause: Duration,
    /// States opened on assignment (restored from the changelog or found current locally).
    pub restores: u64,
    /// Changelog records replayed into local state.
    pub restored_records: u64,
    /// Total time spent opening states on assignment (replay included).
    pub restore_time: Duration,
    /// Messages the consumer delivered a second time, skipped (see docs/architecture.md).
    pub duplicate_deliveries_skipped: u64,
    /// Times the worker recovered in place from an error a restart fixes (a new producer
    /// and consumer, a rejoin; see docs/guarantees.md).
    pub recoveries: u64,
    /// Records written with a timestamp older than their topic's `retention.ms` (the
    /// broker deletes them soon after).
    pub records_past_retention: u64,
    /// Changelog partitions this worker keeps standby copies of (`standby_replicas`).
    pub standby_partitions: u64,
    /// Changelog records those copies are behind, in all (measured every 2 s).
    pub standby_lag: u64,
}

impl Stats {
    /// Copies the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            records_in: get(&self.records_in),
            records_out: get(&self.records_out),
            commits: get(&self.commits),
            aborts: get(&self.aborts),
            rebalances: get(&self.rebalances),
            partitions: get(&self.partitions),
            commit_time: Duration::from_nanos(get(&self.commit_nanos)),
            max_rebalance_pause: Duration::from_nanos(get(&self.max_pause_nanos)),
            restores: get(&self.restores),
            restored_records: get(&self.restored_records),
            restore_time: Duration::from_nanos(get(&self.restore_nanos)),
            duplicate_deliveries_skipped: get(&self.duplicate_deliveries),
            standby_partitions: get(&self.standby_partitions),
            standby_lag: get(&self.standby_lag),
            recoveries: get(&self.recoveries),
            records_past_retention: get(&self.past_retention),
        }
    }

    /// A cycle of `records` input records committed after `latency`.
    pub(crate) fn committed(&self, records: u64, latency: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_nanos
            .fetch_add(latency.as_nanos() as u64, Ordering::Relaxed);
        let out = self.records_out.load(Ordering::Relaxed);
        let before = self.records_out_committed.swap(out, Ordering::Relaxed);
        metrics::counter!(metric::TRANSACTIONS_COMMITTED).increment(1);
        metrics::counter!(metric::RECORDS_IN).increment(records);
        metrics::counter!(metric::RECORDS_OUT).increment(out.saturating_sub(before));
        metrics::histogram!(metric::COMMIT_LATENCY).record(latency.as_secs_f64());
    }

    /// A cycle was aborted.
    pub(crate) fn aborted(&self) {
        self.aborts.fetch_add(1, Ordering::Relaxed);
        self.records_out_committed
            .store(self.records_out.load(Ordering::Relaxed), Ordering::Relaxed);
        metrics::counter!(metric::TRANSACTIONS_ABORTED).increment(1);
    }

    /// A message delivered again was skipped.
    pub(crate) fn duplicate_delivery(&self) {
        self.duplicate_deliveries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric::DUPLICATE_DELIVERIES_SKIPPED).increment(1);
    }

    /// A revocation paused processing for `pause`.
    pub(crate) fn rebalanced(&self, pause: Duration) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        self.max_pause_nanos
            .fetch_max(pause.as_nanos() as u64, Ordering::Relaxed);
        metrics::counter!(metric::REBALANCES).increment(1);
        metrics::histogram!(metric::REBALANCE_PAUSE).record(pause.as_secs_f64());
    }

    /// A record was written past its topic's retention.
    pub(crate) fn past_retention(&self) {
        self.past_retention.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric::RECORDS_PAST_RETENTION).increment(1);
    }

    /// The worker recovers in place from an error of this `cause`.
    pub(crate) fn recovered(&self, cause: &'static str) {
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric::RECOVERIES, "cause" => cause).increment(1);
    }

    /// `replayed` changelog records restored in `took`.
    pub(crate) fn restored(&self, replayed: u64, took: Duration) {
        self.restores.fetch_add(1, Ordering::Relaxed);
        self.restored_records.fetch_add(replayed, Ordering::Relaxed);
        self.restore_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        metrics::counter!(metric::RESTORED_RECORDS).increment(replayed);
    }
}
