//! Reading a topic to its end, and the group's committed offsets.
//!
//! "End" is not a timeout: a partition is read when the reader's position reaches the
//! partition's high watermark. Under `read_committed` the position cannot pass the last
//! stable offset, so reaching the high watermark also proves that no transaction is left
//! open (LSO == HW). The deadline only turns a hanging transaction into an error.

use super::broker::client_config;
use super::{err, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// The isolation level of a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional ones).
    ReadCommitted,
    /// Every record written, aborted transactions included.
    ReadUncommitted,
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp, ms since the epoch.
    pub timestamp: Option<i64>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

fn client(brokers: &str, isolation: Isolation) -> Result<BaseConsumer> {
    client_config(brokers)?
        .set("group.id", "exactly-testkit-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set(
            "isolation.level",
            match isolation {
                Isolation::ReadCommitted => "read_committed",
                Isolation::ReadUncommitted => "read_uncommitted",
            },
        )
        .create()
        .map_err(|e| err(format!("cannot create a reader: {e}")))
}

/// `(partition, leader node)` of every partition of `topic` (leader -1: none now), by
/// partition.
pub(crate) fn partition_leaders(brokers: &str, topic: &str) -> Result<Vec<(i32, i32)>> {
    leaders_by(&client(brokers, Isolation::ReadUncommitted)?, topic)
}

fn leaders_by(c: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i32)>> {
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| err(format!("metadata of {topic}: {e}")))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .ok_or_else(|| err(format!("topic {topic} does not exist")))?;
    let mut leaders: Vec<(i32, i32)> = t
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    leaders.sort_unstable();
    Ok(leaders)
}

fn partitions(c: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    Ok(leaders_by(c, topic)?.into_iter().map(|(p, _)| p).collect())
}

/// Low and high watermarks `(partition, low, high)` of every partition of `topic`: where
/// its log starts and ends.
///
/// # Errors
/// When the topic is missing or the broker does not answer.
pub fn watermarks(brokers: &str, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
    let c = client(brokers, Isolation::ReadUncommitted)?;
    partitions(&c, topic)?
        .into_iter()
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(low, high)| (p, low, high))
                .map_err(|e| err(format!("watermarks of {topic}/{p}: {e}")))
        })
        .collect()
}

/// High watermarks (read_uncommitted end offsets) of every partition of `topic`.
///
/// # Errors
/// When the topic is missing or the broker does not answer.
pub fn high_watermarks(brokers: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    Ok(watermarks(brokers, topic)?
        .into_iter()
        .map(|(p, _, high)| (p, high))
        .collect())
}

/// Reads every record of `topic` from the beginning to its end (see the module doc).
///
/// # Errors
/// When a partition's position has not reached its high watermark by `deadline`: under
/// `read_committed` that means a transaction was left open.
pub fn read_to_end(
    brokers: &str,
    topic: &str,
    isolation: Isolation,
    deadline: Duration,
) -> Result<Vec<ReadRecord>> {
    let ends = high_watermarks(brokers, topic)?;
    let c = client(brokers, isolation)?;
    let mut tpl = TopicPartitionList::new();
    for (p, _) in &ends {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| err(e.to_string()))?;
    }
    c.assign(&tpl).map_err(|e| err(format!("assign: {e}")))?;
    let give_up = Instant::now() + deadline;
    let mut out = Vec::new();
    let mut since_check = 0u32;
    loop {
        let polled = c.poll(Duration::from_millis(100));
        let idle = polled.is_none();
        match polled {
            Some(Ok(m)) => out.push(ReadRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                timestamp: m.timestamp().to_millis(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => return Err(err(format!("reading {topic}: {e}"))),
            None => {}
        }
        // Positions are checked when idle, and every few thousand records.
        since_check += 1;
        if !idle && since_check < 5_000 {
            continue;
        }
        since_check = 0;
        let positions = c.position().map_err(|e| err(format!("position: {e}")))?;
        let behind: Vec<(i32, i64, i64)> = ends
            .iter()
            .filter_map(|(p, hw)| {
                let pos = match positions.find_partition(topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                (pos < *hw && *hw > 0).then_some((*p, pos, *hw))
            })
            .collect();
        if behind.is_empty() {
            out.sort_by_key(|r| (r.partition, r.offset));
            return Ok(out);
        }
        if Instant::now() > give_up {
            return Err(err(format!(
                "{topic}: after {deadline:?} the reader ({isolation:?}) is still behind the high watermark \
                 (partition, position, high watermark): {behind:?}; under read_committed this means a transaction is still open"
            )));
        }
    }
}

/// The group's committed offsets for every partition of `topic` (`None`: nothing committed).
///
/// # Errors
/// When the broker does not answer.
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
) -> Result<Vec<(i32, Option<i64>)>> {
    let c: BaseConsumer = client_config(brokers)?
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| err(format!("cannot create a client: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&c, topic)? {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(30))
        .map_err(|e| err(format!("committed offsets of {group}: {e}")))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
            )
        })
        .collect())
}

/// Whether `group` has consumed all of `topic`: for every partition, no committed record
/// lies at or after the group's committed offset. (On a transactional topic the committed
/// offset may stop at a trailing commit marker, one short of the high watermark: that still
/// counts as caught up.)
///
/// # Errors
/// When the broker does not answer, or the tail cannot be read within a minute.
pub fn caught_up(brokers: &str, group: &str, topic: &str) -> Result<bool> {
    let ends = high_watermarks(brokers, topic)?;
    let committed = committed_offsets(brokers, group, topic)?;
    let mut tail = TopicPartitionList::new();
    let mut behind = Vec::new();
    for (p, hw) in &ends {
        let c = committed
            .iter()
            .find(|(cp, _)| cp == p)
            .and_then(|(_, o)| *o);
        match c {
            _ if *hw == 0 => {}
            None => return Ok(false),
            Some(c) if c >= *hw => {}
            Some(c) => {
                tail.add_partition_offset(topic, *p, Offset::Offset(c))
                    .map_err(|e| err(e.to_string()))?;
                behind.push((*p, *hw));
            }
        }
    }
    if behind.is_empty() {
        return Ok(true);
    }
    let c = client(brokers, Isolation::ReadCommitted)?;
    c.assign(&tail).map_err(|e| err(format!("assign: {e}")))?;
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = c.poll(Duration::from_millis(50)) {
            m.map_err(|e| err(format!("reading {topic}: {e}")))?;
            return Ok(false);
        }
        let positions = c.position().map_err(|e| err(format!("position: {e}")))?;
        let done = behind.iter().all(|(p, hw)| {
            matches!(positions.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *hw)
        });
        if done {
            return Ok(true);
        }
        if Instant::now() > give_up {
            return Err(err(format!(
                "{topic}: cannot read the tail after the committed offsets of {group}"
            )));
        }
    }
}

/// Whether the application `application_id` running `pipeline` has committed everything
/// it reads: its input and every internal (repartition) topic, without naming them.
///
/// # Errors
/// As [`caught_up`].
pub fn app_caught_up(
    brokers: &str,
    application_id: &str,
    pipeline: &exactly_framework::Pipeline,
) -> Result<bool> {
    for topic in pipeline.topics_read(application_id) {
        if !caught_up(brokers, application_id, &topic)? {
            return Ok(false);
        }
    }
    Ok(true)
}
