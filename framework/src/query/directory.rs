//! Which instance owns a partition, and at which query address: read from the consumer
//! group itself.
//!
//! A worker with a query server puts its advertised address in its consumer's `client.id`
//! (`{client id}@query={host:port}`), and the group's description (DescribeGroups) gives
//! every member's client id and current assignment. So the directory is the group's own
//! view — it never names a partition's former owner once the group has reassigned it, and
//! needs no topic of its own — at the cost of one DescribeGroups per second at most.
// Without the `query` feature only `client_id` is referred to (and never called).
#![cfg_attr(not(feature = "query"), allow(dead_code))]

use crate::config::Config;
use crate::error::{Error, KafkaOp, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What separates a client id from the query address it carries.
const MARK: &str = "@query=";

/// How long a group description is used before it is read again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The consumer `client.id` of a worker whose query server is at `address`.
pub(crate) fn client_id(base: Option<&str>, address: &str) -> String {
    format!("{}{MARK}{address}", base.unwrap_or("exactly"))
}

/// The query address a member's client id carries, if any.
pub(crate) fn address_in(client_id: &str) -> Option<&str> {
    client_id
        .rsplit_once(MARK)
        .map(|(_, a)| a)
        .filter(|a| !a.is_empty())
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

/// Query addresses by topic partition, with when they were read.
type Owners = (Instant, HashMap<(String, i32), String>);

/// The group's members' query addresses by partition, read on demand.
pub(crate) struct Directory {
    client: BaseConsumer,
    group: String,
    owners: Mutex<Option<Owners>>,
}

impl Directory {
    /// A directory of `config`'s group (a client of its own, no membership).
    ///
    /// # Errors
    /// [`Error::Kafka`] when the client cannot be created.
    pub(crate) fn new(config: &Config) -> Result<Self> {
        let client = config
            .client_config(true)?
            .create()
            .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
        Ok(Directory {
            client,
            group: config.application_id.clone(),
            owners: Mutex::new(None),
        })
    }

    /// The query address of the member that owns `topic/partition`, from a group
    /// description at most a second old (`None`: no member owns it now, or its owner has no
    /// query server). Blocking.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the group cannot be described.
    pub(crate) fn owner(&self, topic: &str, partition: i32) -> Result<Option<String>> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        let stale = owners
            .as_ref()
            .is_none_or(|(read, _)| read.elapsed() > FRESH_FOR);
        if stale {
            *owners = Some((Instant::now(), self.describe()?));
        }
        Ok(owners
            .as_ref()
            .and_then(|(_, map)| map.get(&(topic.to_string(), partition)).cloned()))
    }

    fn describe(&self) -> Result<HashMap<(String, i32), String>> {
        let list = self
            .client
            .fetch_group_list(Some(&self.group), Duration::from_secs(10))
            .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
        let mut owners = HashMap::new();
        for group in list.groups().iter().filter(|g| g.name() == self.group) {
            for member in group.members() {
                let (Some(address), Some(assignment)) =
                    (address_in(member.client_id()), member.assignment())
                else {
                    continue;
                };
                for tp in assigned_partitions(assignment).unwrap_or_default() {
                    owners.insert(tp, address.to_string());
                }
            }
        }
        Ok(owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_travels_in_the_client_id() {
        let id = client_id(None, "10.0.0.7:8080");
        assert_eq!(id, "exactly@query=10.0.0.7:8080");
        assert_eq!(address_in(&id), Some("10.0.0.7:8080"));
        assert_eq!(
            address_in(&client_id(Some("billing"), "h:1")).map(str::to_string),
            Some("h:1".to_string())
        );
        assert_eq!(address_in("rdkafka"), None);
    }

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
