//! Restoring one state of one task: how to bring its local store up to the committed input
//! offset ([`plan`], I/O-free and unit-tested), and the replay of its changelog.

use super::manager::StateManager;
use super::store::{self, Checkpoint, PreparedBatch};
use crate::error::{Error, KafkaOp, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How a local store is brought up to the committed input offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The local checkpoint stands at the committed offset: use the store as it is.
    Current(Checkpoint),
    /// The local store is behind: replay the changelog from this offset.
    Replay { from: i64 },
    /// The local store cannot be caught up: clear it and replay the whole changelog from
    /// its log start, for this reason.
    Rebuild { reason: String },
}

/// Decides how to restore, from the local checkpoint, the committed input offset, the
/// changelog's watermarks and its `delete.retention.ms`. I/O-free, unit-tested.
pub(crate) fn plan(
    local: Option<Checkpoint>,
    start_offset: i64,
    low: i64,
    high: i64,
    delete_retention: Duration,
) -> Plan {
    let Some(cp) = local else {
        return Plan::Rebuild {
            reason: "no local checkpoint".into(),
        };
    };
    if cp.changelog_offset > high {
        return Plan::Rebuild {
            reason: format!(
                "the local checkpoint is at changelog offset {}, past the changelog's end {high} \
                 (was the changelog deleted and created again?)",
                cp.changelog_offset
            ),
        };
    }
    if cp.input_offset == start_offset {
        return Plan::Current(cp);
    }
    if cp.input_offset > start_offset {
        return Plan::Rebuild {
            reason: format!(
                "the local checkpoint (input offset {}) is ahead of the committed offset",
                cp.input_offset
            ),
        };
    }
    if cp.changelog_offset < low {
        return Plan::Rebuild {
            reason: format!(
                "the changelog now starts at {low}, after the local checkpoint's offset {}",
                cp.changelog_offset
            ),
        };
    }
    // Tombstones written after the checkpoint may be gone once delete.retention.ms has
    // passed: replaying from the checkpoint would then keep deleted keys.
    let margin = (delete_retention / 2).min(Duration::from_secs(60));
    match cp.age() {
        Some(age) if age + margin < delete_retention => Plan::Replay {
            from: cp.changelog_offset,
        },
        Some(age) => Plan::Rebuild {
            reason: format!(
                "the local checkpoint is {} s old, and compaction may have removed tombstones written \
                 since (delete.retention.ms = {} ms)",
                age.as_secs(),
                delete_retention.as_millis()
            ),
        },
        None => Plan::Rebuild {
            reason: "the local checkpoint has no time (written by an older version)".into(),
        },
    }
}

/// Brings `tree` up to the committed input offset `start_offset` as [`plan`] decides, and
/// returns the new checkpoint.
///
/// Replay reads `read_committed` up to the partition's high watermark taken at the start —
/// so it waits for a previous owner's open transaction to end (at most its transaction
/// timeout) and never stops at a stable offset that has not caught up with a just-committed
/// cycle — streams the records into the store, then writes the new checkpoint.
/// The worker's restore consumer uses `auto.offset.reset=error`: a start that is no longer
/// in the log clears the store and replays from the log start, it never silently skips to
/// the end.
///
/// # Errors
/// [`Error::State`] when the store fails or the changelog cannot be read to its end within
/// twice the transaction timeout plus a minute.
pub(crate) fn restore(
    env: &StateManager,
    tree: &store::Tree,
    topic: &str,
    partition: i32,
    start_offset: i64,
    delete_retention: Duration,
) -> Result<Checkpoint> {
    let started = Instant::now();
    let (low, high) = env.watermarks(topic, partition)?;
    let mut from = match plan(
        store::checkpoint(tree)?,
        start_offset,
        low,
        high,
        delete_retention,
    ) {
        Plan::Current(cp) => {
            tracing::info!(
                topic,
                partition,
                ?cp,
                "local state matches the committed offset: no replay"
            );
            env.stats.restored(0, started.elapsed());
            return Ok(cp);
        }
        Plan::Replay { from } => from,
        Plan::Rebuild { reason } => {
            if reason != "no local checkpoint" {
                tracing::warn!(topic, partition, %reason, "local state cleared: rebuilding it from the whole changelog");
            }
            clear(tree)?;
            low
        }
    };
    let replayed = match replay(env, tree, topic, partition, from, high) {
        Ok(read) => read,
        Err(Replayed::OutOfRange) => {
            let (low, _) = env.watermarks(topic, partition)?;
            tracing::warn!(topic, partition, from, low, "the changelog no longer holds the replay's start: local state cleared, rebuilding it from the log start");
            clear(tree)?;
            from = low;
            replay(env, tree, topic, partition, low, high).map_err(Replayed::into_error)?
        }
        Err(other) => return Err(other.into_error()),
    };
    let cp = Checkpoint::now(start_offset, high.max(from));
    PreparedBatch::new(HashMap::new(), cp)?.apply(tree)?;
    let took = started.elapsed();
    env.stats.restored(replayed, took);
    tracing::info!(
        topic,
        partition,
        from,
        to = high,
        replayed,
        ?took,
        "state restored from the changelog"
    );
    Ok(cp)
}

fn clear(tree: &store::Tree) -> Result<()> {
    tree.clear()
}

/// Why a replay did not reach its end.
enum Replayed {
    /// The start offset is not in the log (any more).
    OutOfRange,
    Failed(Error),
}

impl Replayed {
    fn into_error(self) -> Error {
        match self {
            Replayed::OutOfRange => Error::State {
                op: "restore",
                message: "the changelog's start moved during the restore".into(),
            },
            Replayed::Failed(e) => e,
        }
    }
}

/// How long one restore poll waits for records: short, since the end is found by position
/// (a trailing commit marker delivers no record).
const RESTORE_POLL: Duration = Duration::from_millis(10);

/// Reads `topic/partition` `read_committed` from `from` until its position reaches `high`,
/// with the worker's restore consumer, streaming each record into `tree` (a tombstone
/// deletes its key); returns how many records it read.
fn replay(
    env: &StateManager,
    tree: &store::Tree,
    topic: &str,
    partition: i32,
    from: i64,
    high: i64,
) -> std::result::Result<u64, Replayed> {
    if high <= from {
        return Ok(0);
    }
    env.with_restore_consumer(|consumer| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))
            .and_then(|()| consumer.assign(&tpl))
            .map_err(|e| Replayed::Failed(Error::kafka(KafkaOp::Seek, e)))?;
        let read = read_to(env, consumer, tree, topic, partition, high);
        // The consumer stays connected for the next restore; it keeps no assignment.
        let _ = consumer.unassign();
        read
    })
    .map_err(Replayed::Failed)?
}

/// The loop of [`replay`], on an assigned restore consumer.
fn read_to(
    env: &StateManager,
    consumer: &BaseConsumer,
    tree: &store::Tree,
    topic: &str,
    partition: i32,
    high: i64,
) -> std::result::Result<u64, Replayed> {
    let deadline =
        Duration::from_millis(2 * env.config.transaction_timeout_ms) + Duration::from_secs(60);
    let started = Instant::now();
    let mut writer = store::RestoreWriter::new(tree);
    let mut read = 0u64;
    loop {
        match consumer.poll(RESTORE_POLL) {
            Some(Ok(m)) if m.partition() != partition || m.topic() != topic => {
                // Left over from an earlier assignment of the shared consumer.
                continue;
            }
            Some(Ok(m)) => {
                if let Some(k) = m.key() {
                    writer.put(k, m.payload()).map_err(Replayed::Failed)?;
                }
                read += 1;
                if read.is_multiple_of(100_000) {
                    tracing::info!(
                        topic,
                        partition,
                        read,
                        at = m.offset(),
                        to = high,
                        "restoring"
                    );
                }
                if m.offset() + 1 >= high {
                    break;
                }
                if !read.is_multiple_of(10_000) {
                    continue;
                }
            }
            // The fetch reached the stable end: check the position at once.
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) if is_out_of_range(&e) => return Err(Replayed::OutOfRange),
            Some(Err(e)) => {
                let e = match Error::kafka(KafkaOp::Poll, e) {
                    e @ Error::NotAuthorized {
                        resource_type: "GROUP",
                        ..
                    } => e.needing("DESCRIBE").naming(
                        "GROUP",
                        super::manager::restore_group(&env.config.application_id),
                    ),
                    e => e.needing("READ").naming("TOPIC", topic),
                };
                return Err(Replayed::Failed(e));
            }
            None => {}
        }
        let position = consumer
            .position()
            .ok()
            .and_then(|p| p.find_partition(topic, partition).map(|e| e.offset()));
        if matches!(position, Some(Offset::Offset(o)) if o >= high) {
            break;
        }
        if started.elapsed() > deadline {
            return Err(Replayed::Failed(Error::State {
                op: "restore",
                message: format!(
                    "changelog {topic}/{partition} not readable to its end ({high}) within {deadline:?}: \
                     position {position:?} (is a transaction left open on it?)"
                ),
            }));
        }
    }
    writer.finish().map_err(Replayed::Failed)?;
    Ok(read)
}

/// Whether a consumer error says the fetch position is not in the log
/// (`auto.offset.reset=error`).
fn is_out_of_range(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange) | Some(RDKafkaErrorCode::AutoOffsetReset)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn cp(input: i64, changelog: i64, age: Duration) -> Option<Checkpoint> {
        let mut c = Checkpoint::now(input, changelog);
        c.written_at_ms -= age.as_millis() as u64;
        Some(c)
    }

    #[test]
    fn a_current_checkpoint_is_used_as_it_is() {
        let c = cp(100, 40, Duration::ZERO);
        assert_eq!(plan(c, 100, 0, 41, DAY), Plan::Current(c.unwrap()));
    }

    #[test]
    fn a_checkpoint_behind_replays_from_its_changelog_offset() {
        assert_eq!(
            plan(cp(100, 40, Duration::from_secs(5)), 150, 0, 60, DAY),
            Plan::Replay { from: 40 }
        );
    }

    #[test]
    fn no_checkpoint_rebuilds() {
        assert!(matches!(plan(None, 0, 0, 0, DAY), Plan::Rebuild { .. }));
    }

    #[test]
    fn a_checkpoint_past_the_changelog_end_rebuilds_even_when_current() {
        let p = plan(cp(100, 40, Duration::ZERO), 100, 0, 3, DAY);
        assert!(
            matches!(&p, Plan::Rebuild { reason } if reason.contains("past the changelog's end 3")),
            "{p:?}"
        );
    }

    #[test]
    fn a_checkpoint_ahead_of_the_committed_offset_rebuilds() {
        assert!(matches!(
            plan(cp(200, 40, Duration::ZERO), 100, 0, 60, DAY),
            Plan::Rebuild { .. }
        ));
    }

    #[test]
    fn a_checkpoint_below_the_log_start_rebuilds() {
        let p = plan(cp(100, 40, Duration::ZERO), 150, 45, 60, DAY);
        assert!(
            matches!(&p, Plan::Rebuild { reason } if reason.contains("now starts at 45")),
            "{p:?}"
        );
    }

    #[test]
    fn a_checkpoint_older_than_the_tombstone_retention_rebuilds() {
        let retention = Duration::from_secs(1);
        let p = plan(cp(100, 40, Duration::from_secs(2)), 150, 0, 60, retention);
        assert!(
            matches!(&p, Plan::Rebuild { reason } if reason.contains("delete.retention.ms = 1000 ms")),
            "{p:?}"
        );
        // Within the retention (and its margin), the replay is safe.
        assert_eq!(
            plan(
                cp(100, 40, Duration::from_millis(100)),
                150,
                0,
                60,
                retention
            ),
            Plan::Replay { from: 40 }
        );
        // The margin: a minute at most, half the retention at most.
        assert!(matches!(
            plan(cp(100, 40, DAY - Duration::from_secs(30)), 150, 0, 60, DAY),
            Plan::Rebuild { .. }
        ));
    }

    #[test]
    fn a_checkpoint_without_a_time_rebuilds_when_behind() {
        let mut c = Checkpoint::now(100, 40);
        c.written_at_ms = 0;
        assert!(matches!(
            plan(Some(c), 150, 0, 60, DAY),
            Plan::Rebuild { .. }
        ));
        assert_eq!(plan(Some(c), 100, 0, 60, DAY), Plan::Current(c));
    }
}
