//! # exactly-framework
//!
//! The runtime of `exactly`: exactly-once stream processing on Apache Kafka.
//!
//! # Data path
//!
//! ```text
//!  consumer ──► operators ──► producer ──► commit barrier
//! ```
//!
//! 1. **input** (`runtime::consumer`): one group consumer per worker (`read_committed`,
//!    manual offsets) reads the input partitions; each partition is a *task* with its own
//!    operator instances ([`record::TaskId`]).
//! 2. **operators** ([`operator`]): the user's chain, built with [`Pipeline`] /
//!    [`Stream::apply`]; records are [`Record`]s decoded by a [`Codec`]; keyed state lives
//!    in [`state`].
//! 3. **output** ([`producer`]): output records, side outputs, repartition hops and changelog
//!    records go through the worker's transactional producer, inside the open transaction.
//! 4. **commit barrier** ([`commit`]): every `commit_interval_ms` or `commit_max_records`,
//!    operators flush, the consumed offsets are sent to the transaction and it commits —
//!    the single commit point. Failures abort and rewind.
//!
//! [`runtime`] wires these together on a dedicated thread per worker, and handles
//! rebalances (commit in the revoke callback) and shutdown.
//!
//! # Layers
//!
//! Modules import downward only (a test reads the `use crate::` paths and fails on an
//! upward one):
//!
//! ```text
//! runtime      Runtime, Worker, the worker loop, tasks, the group consumer
//! commit       the commit protocol's core (no I/O) and its Kafka side; query: the
//!              interactive-query HTTP server and its directory of owners
//! pipeline     the builder and the per-task chain of nodes
//! operator     the Operator trait, Context, Collector
//! state        keyed state: store, changelog, restore, standbys, the queryable
//!              registry, the state manager; table: global tables and their reader service
//! producer     the worker-wide producer and the Sink description
//! topics       topic names, metadata checks, internal topics; group: the consumer
//!              group's description
//! ground       error, security, config, record, codec, schema, observability, poison, instance
//! ```
//!
//! The commit core talks to traits for the producer, the consumer and the tasks, so each
//! failure branch is unit-tested. A panic in user code is caught where it happens and
//! poisons the worker (`poison`): nothing commits afterwards. Each worker holds a locked
//! directory of its own under `state_dir` (`instance`).

#![warn(missing_docs)]

pub mod codec;
pub mod commit;
pub mod config;
pub mod error;
pub(crate) mod group;
pub(crate) mod instance;
pub mod observability;
pub mod operator;
pub mod pipeline;
pub(crate) mod poison;
pub mod producer;
pub(crate) mod query;
pub mod record;
pub mod runtime;
#[cfg(feature = "schemas")]
pub mod schema;
pub mod security;
pub mod state;
pub mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;

pub use codec::{Codec, Serde};
pub use config::{Assignment, Config, Guarantee, OnPanic};
pub use error::{Action, Error, KafkaOp, Result};
pub use observability::{Stats, StatsSnapshot};
pub use operator::{Collector, Context, Operator, SideRecord, Timer, TimerKind};
pub use pipeline::{BadRecords, Pipeline, Stream};
pub use producer::{Partitioning, Sink};
pub use record::{Header, Origin, Record, TaskId};
pub use runtime::{Runtime, Worker};
pub use security::{Sasl, Secret, Security, Tls};
pub use state::{KeyedState, StateDescriptor};
