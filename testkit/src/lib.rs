//! # exactly-testkit
//!
//! Helpers around a real Kafka broker for the tests, examples and benches of `exactly` —
//! one copy of each, not part of the published facade.
//!
//! - [`broker`]: the bootstrap servers, from `KAFKA_BROKERS` or the local broker that
//!   `scripts/kafka start` runs (started once per machine, safe to call concurrently);
//! - [`cluster`]: the local 3-node cluster (`scripts/kafka --brokers 3`): start it, kill a
//!   node, find the coordinator and the partition leaders;
//! - [`secure`]: the local secured broker (`scripts/kafka --secure`): TLS, SASL and ACLs;
//! - [`topics`]: unique names, create and delete topics, preload records;
//! - [`reader`]: read a topic to its end under `read_committed` or `read_uncommitted`;
//!   whether a group, or a whole application ([`app_caught_up`]), has committed its input;
//! - [`wordcount`]: the word count pipeline and the counts a corpus must give;
//! - [`Harness`]: the operator harness without Kafka (`exactly_framework::testing`).

#![warn(missing_docs)]

pub mod broker;
pub mod chaos;
pub mod cluster;
pub mod orders;
pub mod process;
pub mod reader;
pub mod secure;
pub mod topics;
pub mod wordcount;

pub use broker::bootstrap_servers;
pub use exactly_framework::testing::Harness;
pub use reader::{
    app_caught_up, caught_up, committed_offsets, read_to_end, watermarks, Isolation, ReadRecord,
};
pub use topics::{
    create_topic, create_topic_assigned, create_topic_with, delete_records, delete_topic, produce,
    set_topic_config, unique_name, Loader,
};

/// An error of a testkit helper, with a message saying what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TestkitError(pub String);

/// The testkit's result type.
pub type Result<T> = std::result::Result<T, TestkitError>;

pub(crate) fn err(msg: impl Into<String>) -> TestkitError {
    TestkitError(msg.into())
}
