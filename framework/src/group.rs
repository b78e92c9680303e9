//! The consumer group as its description shows it (DescribeGroups): each member's id,
//! client id and assigned partitions. Read by the query server's directory (who owns a
//! partition) and the standby tasks (which members there are).

use crate::error::{Error, KafkaOp, Result};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::time::Duration;

/// One member of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Its member id.
    pub(crate) id: String,
    /// Its client id.
    pub(crate) client_id: String,
    /// Its assigned topic partitions.
    pub(crate) partitions: Vec<(String, i32)>,
}

/// The members of `group`, with their assignments.
///
/// # Errors
/// [`Error::Kafka`] when the group cannot be described.
pub(crate) fn describe<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    group: &str,
) -> Result<Vec<Member>> {
    let list = client
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| Member {
            id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            partitions: m
                .assignment()
                .and_then(assigned_partitions)
                .unwrap_or_default(),
        })
        .collect())
}

/// The topic partitions of a consumer-protocol assignment (`ConsumerProtocolAssignment`:
/// version, then per topic its name and partitions, then user data).
pub(crate) fn assigned_partitions(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let topic = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        for _ in 0..r.i32()?.max(0) {
            out.push((topic.clone(), r.i32()?));
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_lists_its_topic_partitions() {
        let mut b = Vec::new();
        b.extend(1i16.to_be_bytes()); // version
        b.extend(2i32.to_be_bytes()); // topics
        for (topic, parts) in [("a", vec![0i32, 2]), ("bb", vec![1])] {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        assert_eq!(
            assigned_partitions(&b),
            Some(vec![("a".into(), 0), ("a".into(), 2), ("bb".into(), 1)])
        );
        assert_eq!(assigned_partitions(&b[..7]), None);
    }
}
