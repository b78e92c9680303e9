//! Warm standbys: a worker keeps local copies of the states of partitions it does not own,
//! tailing their changelogs, so that taking one over restores only the tail.
//!
//! Without a custom assignor (librdkafka offers none) the standbys are chosen by rendezvous
//! hashing: for each changelog partition, the group's members other than its owner (from
//! the group's description) are ranked by a hash of (member id, topic, partition), and the
//! first `standby_replicas` keep it. Every member computes the same ranking, so each
//! partition has its standbys without any coordination, and a change of membership moves
//! only the standbys it must.
//!
//! A standby reads the changelog `read_committed` with a consumer of its own (no group, no
//! commits, no producer, no transaction) and applies what it reads to the same store tree the
//! task would open, in batches that end in a checkpoint whose input offset is unknown (-1)
//! and whose changelog offset is where the standby stands. A task that opens the state later
//! finds that checkpoint and replays only from there ([`restore`](super::restore)). Before a
//! task opens a state, the worker marks its changelog partition active (under the lock the
//! standby holds while it applies a batch), so the two never write one tree.

use super::store::{self, Checkpoint, PreparedBatch};
use crate::config::Config;
use crate::error::{Error, KafkaOp, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The input offset of a checkpoint written by a standby: not known, so a task that opens
/// the state never takes it as current and replays from its changelog offset.
pub(crate) const STANDBY_INPUT_OFFSET: i64 = -1;

/// How often the standby reads the group's description and recomputes its partitions.
const RECOMPUTE_EVERY: Duration = Duration::from_secs(2);

/// A state whose changelog partitions a standby may keep: where its trees are named from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Target {
    pub(crate) changelog: String,
    pub(crate) operator: String,
    pub(crate) state: String,
    /// The stage input topic whose partition `p` owns changelog partition `p`.
    pub(crate) task_topic: String,
}

/// What the worker and its standby share.
#[derive(Default)]
pub(crate) struct Shared {
    /// Changelog partitions whose state a task holds: a standby never writes them. Held by
    /// the standby while it applies a batch.
    active: Mutex<BTreeSet<(String, i32)>>,
    /// The states this worker has opened, by changelog topic.
    targets: Mutex<BTreeMap<String, Target>>,
    /// This worker's member id in the group (set after each assignment).
    member_id: Mutex<Option<String>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Marks a changelog partition as held by a task until the guard is dropped; waits
    /// for a batch the standby is applying to it.
    pub(crate) fn activate(self: &Arc<Self>, target: Target, partition: i32) -> ActiveGuard {
        let key = (target.changelog.clone(), partition);
        lock(&self.active).insert(key.clone());
        lock(&self.targets).insert(target.changelog.clone(), target);
        ActiveGuard {
            shared: self.clone(),
            key,
        }
    }

    /// Makes a state a target before any task opens it.
    pub(crate) fn add_target(&self, target: Target) {
        lock(&self.targets).insert(target.changelog.clone(), target);
    }

    /// Records this worker's member id (the standby ranks members by it).
    pub(crate) fn set_member_id(&self, id: Option<String>) {
        *lock(&self.member_id) = id;
    }
}

/// A changelog partition held by a task; released when dropped (the task closed).
pub(crate) struct ActiveGuard {
    shared: Arc<Shared>,
    key: (String, i32),
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        lock(&self.shared.active).remove(&self.key);
    }
}

/// The members that keep standbys of `changelog` partition `partition`: the first
/// `replicas` of `members` (member ids) other than `owner`, by rendezvous hash.
pub(crate) fn standbys_of<'m>(
    members: &'m [String],
    owner: Option<&str>,
    changelog: &str,
    partition: i32,
    replicas: usize,
) -> Vec<&'m str> {
    let mut ranked: Vec<(u64, &str)> = members
        .iter()
        .map(String::as_str)
        .filter(|m| Some(*m) != owner)
        .map(|m| {
            let mut h = DefaultHasher::new();
            (m, changelog, partition).hash(&mut h);
            (h.finish(), m)
        })
        .collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.into_iter().take(replicas).map(|(_, m)| m).collect()
}

/// One standby partition being tailed.
struct Tailed {
    tree: store::Tree,
    /// Next changelog offset to apply.
    next: i64,
    /// Read and not yet applied (key → value, `None` deleted).
    pending: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

/// The worker's standby thread (`exactly-standby`); stops when dropped.
pub(crate) struct Standby {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Standby {
    /// Starts tailing, for the worker with `config` and store `db`, the changelog
    /// partitions the ranking gives it.
    ///
    /// # Errors
    /// [`Error::Kafka`] when its consumer cannot be created.
    pub(crate) fn start(
        config: &Config,
        db: store::Store,
        shared: Arc<Shared>,
        partitions: usize,
        stats: Arc<crate::observability::Stats>,
    ) -> Result<Standby> {
        let consumer: BaseConsumer = config
            .client_config(true)?
            // librdkafka assigns partitions only to a consumer with a group; it never
            // joins it or commits.
            .set("group.id", format!("{}-standby", config.application_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.queue.backoff.ms",
                crate::config::FETCH_QUEUE_BACKOFF_MS,
            )
            .create()
            .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
        let mut tail = Tail {
            consumer,
            db,
            shared: shared.clone(),
            group: config.application_id.clone(),
            replicas: config.standby_replicas as usize,
            partitions,
            tailed: BTreeMap::new(),
            stats,
        };
        let thread = std::thread::Builder::new()
            .name("exactly-standby".into())
            .spawn(move || tail.run())
            .map_err(|e| Error::Worker(format!("cannot start the standby thread: {e}")))?;
        Ok(Standby {
            shared,
            thread: Some(thread),
        })
    }
}

struct Tail {
    consumer: BaseConsumer,
    db: store::Store,
    shared: Arc<Shared>,
    group: String,
    replicas: usize,
    partitions: usize,
    tailed: BTreeMap<(String, i32), Tailed>,
    stats: Arc<crate::observability::Stats>,
}

impl Tail {
    fn run(&mut self) {
        let mut last = Instant::now() - RECOMPUTE_EVERY;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if last.elapsed() >= RECOMPUTE_EVERY {
                last = Instant::now();
                if let Err(err) = self.recompute() {
                    tracing::debug!(%err, "standby: cannot read the group; keeping its partitions");
                }
                self.publish_lag();
            }
            if self.tailed.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            self.read(Duration::from_millis(100));
            if let Err(err) = self.apply() {
                tracing::warn!(%err, "standby: cannot apply to the local store");
            }
        }
    }

    /// The changelog partitions this worker should keep, from the group's description.
    fn desired(&self) -> Result<BTreeSet<(String, i32)>> {
        let Some(me) = lock(&self.shared.member_id).clone() else {
            return Ok(BTreeSet::new());
        };
        let members = crate::group::describe(&self.consumer, &self.group)?;
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let targets: Vec<Target> = lock(&self.shared.targets).values().cloned().collect();
        let active = lock(&self.shared.active).clone();
        let mut desired = BTreeSet::new();
        for t in &targets {
            for p in 0..self.partitions as i32 {
                if active.contains(&(t.changelog.clone(), p)) {
                    continue;
                }
                let owner = members
                    .iter()
                    .find(|m| {
                        m.partitions
                            .iter()
                            .any(|(tp, q)| *tp == t.task_topic && *q == p)
                    })
                    .map(|m| m.id.as_str());
                if owner == Some(me.as_str()) {
                    continue;
                }
                if standbys_of(&ids, owner, &t.changelog, p, self.replicas).contains(&me.as_str()) {
                    desired.insert((t.changelog.clone(), p));
                }
            }
        }
        Ok(desired)
    }

    fn recompute(&mut self) -> Result<()> {
        let desired = self.desired()?;
        let current: BTreeSet<(String, i32)> = self.tailed.keys().cloned().collect();
        if desired == current {
            return Ok(());
        }
        // What is dropped keeps what it applied (a later standby or task continues there).
        self.tailed.retain(|k, _| desired.contains(k));
        let targets = lock(&self.shared.targets).clone();
        for key in desired.difference(&current) {
            let Some(t) = targets.get(&key.0) else {
                continue;
            };
            let tree = self.db.tree(&store::tree_name(
                &t.operator,
                &t.state,
                &t.task_topic,
                key.1,
            ))?;
            let next = match store::checkpoint(&tree)? {
                Some(cp) => cp.changelog_offset,
                None => 0,
            };
            self.tailed.insert(
                key.clone(),
                Tailed {
                    tree,
                    next,
                    pending: HashMap::new(),
                },
            );
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), t) in &self.tailed {
            tpl.add_partition_offset(topic, *p, Offset::Offset(t.next))
                .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
        tracing::info!(partitions = ?self.tailed.keys().collect::<Vec<_>>(), "standby partitions");
        Ok(())
    }

    /// Publishes how far each standby partition is behind its changelog's end (a
    /// partition whose end cannot be read counts as behind by 1).
    fn publish_lag(&self) {
        let mut total = 0;
        for ((topic, p), t) in &self.tailed {
            let lag = match self
                .consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(5))
            {
                Ok((_, high)) => (high - t.next).max(0) as u64,
                Err(_) => 1,
            };
            total += lag;
            metrics::gauge!(
                crate::observability::metric::STANDBY_LAG,
                "topic" => topic.clone(),
                "partition" => p.to_string()
            )
            .set(lag as f64);
        }
        self.stats.standby_lag.store(total, Ordering::Relaxed);
        self.stats
            .standby_partitions
            .store(self.tailed.len() as u64, Ordering::Relaxed);
    }

    /// Reads what arrives for up to `wait`, folding it per partition.
    fn read(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut read = 0;
        while read < 10_000 {
            let left = until.saturating_duration_since(Instant::now());
            let Some(polled) = self.consumer.poll(left) else {
                break;
            };
            let Ok(m) = polled else {
                continue;
            };
            let Some(t) = self.tailed.get_mut(&(m.topic().to_string(), m.partition())) else {
                continue;
            };
            if m.offset() < t.next {
                continue;
            }
            if let Some(k) = m.key() {
                t.pending
                    .insert(k.to_vec(), m.payload().map(<[u8]>::to_vec));
            }
            t.next = m.offset() + 1;
            read += 1;
        }
    }

    /// Applies what was read, with a standby checkpoint, unless a task took the partition.
    fn apply(&mut self) -> Result<()> {
        let active = lock(&self.shared.active);
        let mut taken = Vec::new();
        for (key, t) in self.tailed.iter_mut() {
            if active.contains(key) {
                taken.push(key.clone());
                continue;
            }
            let position = self
                .consumer
                .position()
                .ok()
                .and_then(|p| p.find_partition(&key.0, key.1).map(|e| e.offset()));
            // Past transaction markers: where the next read starts.
            if let Some(Offset::Offset(o)) = position {
                t.next = t.next.max(o);
            }
            let stored = store::checkpoint(&t.tree)?.map(|cp| cp.changelog_offset);
            if t.pending.is_empty() && stored == Some(t.next) {
                continue;
            }
            let changes = std::mem::take(&mut t.pending);
            PreparedBatch::from_layer(&changes, Checkpoint::now(STANDBY_INPUT_OFFSET, t.next))?
                .apply(&t.tree)?;
        }
        drop(active);
        for key in taken {
            self.tailed.remove(&key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_ranks_the_same_standbys_and_never_the_owner() {
        let members: Vec<String> = (0..5).map(|i| format!("member-{i}")).collect();
        for p in 0..16 {
            let chosen = standbys_of(
                &members,
                Some("member-0"),
                "app-count-counts-changelog",
                p,
                2,
            );
            assert_eq!(chosen.len(), 2);
            assert!(!chosen.contains(&"member-0"));
            let mut reversed = members.clone();
            reversed.reverse();
            let again = standbys_of(
                &reversed,
                Some("member-0"),
                "app-count-counts-changelog",
                p,
                2,
            );
            assert_eq!(chosen, again);
        }
        // Spread: over many partitions every other member keeps some.
        let mut kept = BTreeSet::new();
        for p in 0..64 {
            kept.extend(standbys_of(&members, Some("member-0"), "c", p, 1));
        }
        assert_eq!(kept.len(), 4);
        // With two members the standby is the other one.
        let two = vec!["a".to_string(), "b".to_string()];
        assert_eq!(standbys_of(&two, Some("a"), "c", 3, 1), vec!["b"]);
    }
}
