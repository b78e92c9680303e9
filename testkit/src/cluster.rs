//! The local 3-node cluster of `scripts/kafka --brokers 3`: start it, take a node away and
//! bring it back, and find which node leads what — for the tests of broker failures that a
//! single node cannot show (a leader or the transaction coordinator dying while the others
//! go on).
//!
//! The cluster has one partition in `__consumer_offsets` and one in `__transaction_state`,
//! so one node coordinates every group and every transactional id: the leader of partition
//! 0 of those topics ([`coordinator`]).

use super::broker::run_script;
use super::reader::partition_leaders;
use super::{err, Result};

/// The number of nodes of the local cluster.
pub const NODES: i32 = 3;

fn script(args: &[&str]) -> Result<String> {
    let mut all = vec!["--brokers", "3"];
    all.extend_from_slice(args);
    run_script(&all).map_err(err)
}

/// Starts the local 3-node cluster (or reuses it; restarts the nodes that are down) and
/// waits until it is usable; returns its bootstrap address list.
///
/// # Errors
/// The script's message (Java or Maven missing, a port taken, a node died).
pub fn start() -> Result<String> {
    script(&["start"])
}

/// SIGKILLs node `node` (1..=[`NODES`]) at once: a crash.
///
/// # Errors
/// When the script fails.
pub fn kill_node(node: i32) -> Result<()> {
    script(&["--node", &node.to_string(), "kill"]).map(drop)
}

/// Stops the whole cluster (SIGTERM), keeping its data.
///
/// # Errors
/// When the script fails.
pub fn stop() -> Result<()> {
    script(&["stop"]).map(drop)
}

/// The node that leads each partition of `topic`, by partition (-1: no leader now).
///
/// # Errors
/// When the metadata cannot be read or the topic does not exist.
pub fn leaders(brokers: &str, topic: &str) -> Result<Vec<i32>> {
    Ok(partition_leaders(brokers, topic)?
        .into_iter()
        .map(|(_, leader)| leader)
        .collect())
}

/// The node that coordinates every transactional id (the leader of
/// `__transaction_state` partition 0).
///
/// # Errors
/// When the metadata cannot be read, or the partition has no leader.
pub fn coordinator(brokers: &str) -> Result<i32> {
    match leaders(brokers, "__transaction_state")?.first() {
        Some(&node) if node >= 0 => Ok(node),
        _ => Err(err("__transaction_state has no leader")),
    }
}

/// A replica assignment for `partitions` partitions with 3 replicas each, in which `node`
/// is the preferred leader of all but the last partition (so it leads most of them).
pub fn assignment_led_by(node: i32, partitions: i32) -> Vec<Vec<i32>> {
    let others: Vec<i32> = (1..=NODES).filter(|&n| n != node).collect();
    (0..partitions)
        .map(|p| {
            if p + 1 < partitions || partitions == 1 {
                vec![node, others[0], others[1]]
            } else {
                vec![others[0], others[1], node]
            }
        })
        .collect()
}
