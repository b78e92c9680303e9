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
use rdkafka::consumer::BaseConsumer;
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
        let mut owners = HashMap::new();
        for member in crate::group::describe(&self.client, &self.group)? {
            if let Some(address) = address_in(&member.client_id) {
                for tp in member.partitions {
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
}
