//! The fetch watchdog: finds assigned partitions that librdkafka never fetches.
//!
//! After a broker that led some partitions and coordinated the group dies, librdkafka can
//! leave a newly assigned partition without a fetch: the assignment is in place, the
//! partition has records, and none arrive, with nothing logged (seen about once in 25 runs
//! of `tests/cluster.rs`, in a partition whose offset had to be reset to the log start).
//! The worker cannot tell that from an idle input by what `poll` returns, but librdkafka's
//! periodic statistics can: they give each partition's fetch state, fetch position, last
//! stable offset, local queue and received count. A partition that stays unfetched for
//! [`STALL_LIMIT`] (longer while its leader is not known to be up) is reported, and the
//! worker starts again in place with a new consumer, as for a lost assignment.

use std::collections::HashMap;
use std::time::Duration;

/// How long an assigned partition whose leader is up may stay without a fetch.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(30);

/// How long one whose leader is unknown or down may: a leader election or a broker
/// restart normally ends well within it, and a new consumer would not fetch sooner.
pub(crate) const STALL_LIMIT_NO_LEADER: Duration = Duration::from_secs(120);

/// What one statistics report says of one assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionReport {
    /// The partition, `topic/partition`.
    pub(crate) name: String,
    /// librdkafka's fetch state (`active` when it fetches).
    pub(crate) fetch_state: String,
    /// The next offset to fetch (negative: none yet).
    pub(crate) fetch_position: i64,
    /// The last stable offset from the latest fetch (negative: no fetch answered yet).
    pub(crate) last_stable_offset: i64,
    /// Records fetched and not yet delivered to the worker.
    pub(crate) queued: i64,
    /// Records received from the broker so far.
    pub(crate) received: u64,
    /// The next offset the worker will be given (moves as it consumes).
    pub(crate) delivered_position: i64,
    /// Whether the partition's leader is known and its connection up.
    pub(crate) leader_up: bool,
}

impl PartitionReport {
    /// Whether this report alone shows the fetch to be fine: fetching and caught up with
    /// the log, or holding records the worker has yet to take.
    fn settled(&self) -> bool {
        self.queued > 0
            || (self.fetch_state == "active"
                && self.fetch_position >= 0
                && self.last_stable_offset >= 0
                && self.fetch_position >= self.last_stable_offset)
    }
}

/// One partition under suspicion: since when, and what it looked like then.
struct Suspect {
    since_us: i64,
    received: u64,
    delivered_position: i64,
}

/// Partitions seen without progress, across statistics reports.
#[derive(Default)]
pub(crate) struct FetchWatch {
    suspects: HashMap<String, Suspect>,
}

impl FetchWatch {
    /// Takes one statistics report (`ts_us`: librdkafka's clock when it was made, in µs,
    /// so that reports queued while the worker was busy keep their own times) of the
    /// assigned partitions, and returns those without a fetch for longer than their limit,
    /// with how long.
    pub(crate) fn observe(
        &mut self,
        ts_us: i64,
        assigned: impl IntoIterator<Item = PartitionReport>,
    ) -> Vec<(String, Duration)> {
        let mut seen = HashMap::new();
        let mut stalled = Vec::new();
        for report in assigned {
            let moved = |s: &Suspect| {
                s.received != report.received || s.delivered_position != report.delivered_position
            };
            let suspect = match self.suspects.remove(&report.name) {
                Some(s) if !report.settled() && !moved(&s) => s,
                _ if report.settled() => continue,
                _ => Suspect {
                    since_us: ts_us,
                    received: report.received,
                    delivered_position: report.delivered_position,
                },
            };
            let stuck_for = Duration::from_micros(ts_us.saturating_sub(suspect.since_us) as u64);
            let limit = if report.leader_up {
                STALL_LIMIT
            } else {
                STALL_LIMIT_NO_LEADER
            };
            if stuck_for >= limit {
                stalled.push((report.name.clone(), stuck_for));
            }
            seen.insert(report.name, suspect);
        }
        // Partitions no longer assigned are forgotten.
        self.suspects = seen;
        stalled
    }
}

/// The reports of the partitions assigned to this consumer, from librdkafka's statistics.
pub(crate) fn assigned_partitions(stats: &rdkafka::Statistics) -> Vec<PartitionReport> {
    let up: Vec<i32> = stats
        .brokers
        .values()
        .filter(|b| b.state == "UP")
        .map(|b| b.nodeid)
        .collect();
    stats
        .topics
        .iter()
        .flat_map(|(topic, t)| {
            let up = &up;
            t.partitions
                .values()
                .filter(|p| p.partition >= 0 && p.desired)
                .map(move |p| PartitionReport {
                    name: format!("{topic}/{}", p.partition),
                    fetch_state: p.fetch_state.clone(),
                    fetch_position: p.next_offset,
                    last_stable_offset: p.ls_offset,
                    queued: p.fetchq_cnt,
                    received: p.rxmsgs,
                    delivered_position: p.app_offset,
                    leader_up: p.leader >= 0 && up.contains(&p.leader),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn report(state: &str, position: i64, lso: i64, received: u64) -> PartitionReport {
        PartitionReport {
            name: "in/0".into(),
            fetch_state: state.into(),
            fetch_position: position,
            last_stable_offset: lso,
            queued: 0,
            received,
            delivered_position: position,
            leader_up: true,
        }
    }

    #[test]
    fn a_partition_never_fetched_is_reported_after_the_limit() {
        let mut watch = FetchWatch::default();
        let stuck = report("offset-query", -1001, -1, 0);
        assert!(watch.observe(0, [stuck.clone()]).is_empty());
        assert!(watch.observe(29 * S, [stuck.clone()]).is_empty());
        let stalled = watch.observe(30 * S, [stuck]);
        assert_eq!(stalled, vec![("in/0".to_string(), Duration::from_secs(30))]);
    }

    #[test]
    fn a_caught_up_or_moving_partition_is_never_reported() {
        let mut watch = FetchWatch::default();
        for i in 0..100 {
            // Idle at the end of its log.
            assert!(watch
                .observe(i * 10 * S, [report("active", 50, 50, 50)])
                .is_empty());
        }
        let mut watch = FetchWatch::default();
        for i in 0..100u64 {
            // Behind, but receiving records.
            let r = report("active", 10 + i as i64, 1_000_000, i);
            assert!(watch.observe(i as i64 * 10 * S, [r]).is_empty());
        }
        let mut watch = FetchWatch::default();
        for i in 0..100 {
            // Its queue full while the worker is slow.
            let mut r = report("active", 10, 1_000_000, 5);
            r.queued = 10_000;
            assert!(watch.observe(i * 10 * S, [r]).is_empty());
        }
    }

    #[test]
    fn progress_restarts_the_clock_and_a_revoked_partition_is_forgotten() {
        let mut watch = FetchWatch::default();
        assert!(watch.observe(0, [report("active", 10, 100, 1)]).is_empty());
        assert!(watch
            .observe(25 * S, [report("active", 10, 100, 1)])
            .is_empty());
        // It moved: the clock starts again.
        assert!(watch
            .observe(26 * S, [report("active", 20, 100, 2)])
            .is_empty());
        assert!(watch
            .observe(50 * S, [report("active", 20, 100, 2)])
            .is_empty());
        assert_eq!(
            watch.observe(56 * S, [report("active", 20, 100, 2)]).len(),
            1
        );
        // Revoked, then assigned again: a new suspicion.
        assert!(watch.observe(57 * S, []).is_empty());
        assert!(watch
            .observe(58 * S, [report("active", 20, 100, 2)])
            .is_empty());
    }

    #[test]
    fn a_partition_without_a_leader_gets_the_longer_limit() {
        let mut watch = FetchWatch::default();
        let mut r = report("active", 10, 100, 1);
        r.leader_up = false;
        assert!(watch.observe(0, [r.clone()]).is_empty());
        assert!(watch.observe(60 * S, [r.clone()]).is_empty());
        assert_eq!(watch.observe(120 * S, [r]).len(), 1);
    }
}
