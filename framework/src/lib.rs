//! # exactly-framework
//!
//! The runtime of `exactly`: exactly-once stream processing on Apache Kafka.
//!
//! # Data path
//!
//! ```text
//!  source ──► operators ──► sink ──► commit barrier
//! ```
//!
//! 1. **source** ([`source`]): one group consumer per worker (`read_committed`, manual
//!    offsets) reads the input partitions; each partition is a *task* with its own operator
//!    instances ([`record::TaskId`]).
//! 2. **operators** ([`operator`]): the user's chain, built with [`Pipeline`] /
//!    [`Stream::apply`]; records are [`Record`]s decoded by a [`Codec`].
//! 3. **sink** ([`sink`]): output records go through the worker's transactional producer,
//!    inside the open transaction.
//! 4. **commit barrier** ([`commit`]): every `commit_interval_ms` or `commit_max_records`,
//!    operators flush, the consumed offsets are sent to the transaction and it commits —
//!    the single commit point. Failures abort and rewind.
//!
//! [`runtime`] wires these together on a dedicated thread per worker, and handles
//! rebalances (commit in the revoke callback) and shutdown. The commit protocol's core does
//! no I/O: it talks to traits for the producer, the consumer and the tasks, so each failure
//! branch is unit-tested. A panic in user code is caught where it happens and poisons the
//! worker (`poison`): nothing commits afterwards. Each worker holds a locked directory of
//! its own under `state_dir` (`instance`). [`config`] and [`error`] are shared by all.

#![warn(missing_docs)]

pub(crate) mod admin;
pub mod codec;
pub mod commit;
pub mod config;
pub mod error;
pub(crate) mod instance;
pub mod observability;
pub mod operator;
pub mod pipeline;
pub(crate) mod poison;
pub mod record;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use codec::{Codec, Serde};
pub use config::{Assignment, Config, Guarantee};
pub use error::{Action, Error, KafkaOp, Result};
pub use operator::{Collector, Context, Operator, SideRecord};
pub use pipeline::{Pipeline, Stream};
pub use record::{Header, Origin, Record, TaskId};
pub use runtime::{Runtime, Stats, StatsSnapshot, Worker};
pub use sink::{Partitioning, Sink};
pub use state::{KeyedState, StateDescriptor};
