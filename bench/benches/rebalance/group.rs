//! Watching the consumer group from outside (ListGroups/DescribeGroups): who owns which
//! partition of one of its topics (the input, or a repartition hop), and when the group is
//! stable. Tells which partitions a forced rebalance moved, and when the group first
//! settled (the start of the throughput window).

use crate::measure::now_ms;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

/// The group at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub at_ms: i64,
    pub state: String,
    pub members: usize,
    /// Owner (member id) of each partition of the watched topic.
    pub owners: Vec<Option<String>>,
    /// Members owning at least one partition of any topic. (Cooperative-sticky balances
    /// the number of partitions per member, not per topic: with an input and a hop, one
    /// member may own all of one and the other all of the other.)
    pub assigned_members: usize,
}

impl GroupView {
    /// Every partition has an owner.
    pub fn complete(&self) -> bool {
        self.owners.iter().all(Option::is_some)
    }

    /// Stable, `workers` members, every partition owned, and every member owning some
    /// partition (when there are enough partitions).
    pub fn settled(&self, workers: usize) -> bool {
        self.state == "Stable"
            && self.members == workers
            && self.complete()
            && (self.assigned_members == workers || workers > self.owners.len())
    }

    /// Same owners, state and size (the history keeps changes only).
    pub fn same(&self, other: &GroupView) -> bool {
        self.state == other.state
            && self.members == other.members
            && self.owners == other.owners
            && self.assigned_members == other.assigned_members
    }
}

/// Describes `group`: its state and who owns which partition of `topic`.
pub fn describe(
    client: &BaseConsumer,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<GroupView> {
    let list = client.fetch_group_list(Some(group), Duration::from_secs(5))?;
    let mut view = GroupView {
        at_ms: now_ms(),
        state: String::from("Unknown"),
        members: 0,
        owners: vec![None; partitions.max(0) as usize],
        assigned_members: 0,
    };
    if let Some(g) = list.groups().iter().find(|g| g.name() == group) {
        view.state = g.state().to_string();
        view.members = g.members().len();
        for m in g.members() {
            let assigned = m.assignment().map(parse_assignment).unwrap_or_default();
            if !assigned.is_empty() {
                view.assigned_members += 1;
            }
            for (_, p) in assigned.iter().filter(|(t, _)| *t == topic.as_bytes()) {
                if let Some(slot) = usize::try_from(*p)
                    .ok()
                    .and_then(|p| view.owners.get_mut(p))
                {
                    *slot = Some(m.id().to_string());
                }
            }
        }
    }
    Ok(view)
}

/// The (topic, partition) pairs of a consumer-protocol assignment (version, then an array
/// of (topic, partitions); the user data after it is ignored).
fn parse_assignment(b: &[u8]) -> Vec<(&[u8], i32)> {
    let mut r = Reader { b, at: 0 };
    let mut out = Vec::new();
    let _version = r.i16();
    let Some(topics) = r.i32() else {
        return out;
    };
    for _ in 0..topics.max(0) {
        let Some(name) = r.string() else { break };
        let Some(n) = r.i32() else { break };
        for _ in 0..n.max(0) {
            let Some(p) = r.i32() else { break };
            out.push((name, p));
        }
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.i16()?;
        self.take(n.max(0) as usize)
    }
}
