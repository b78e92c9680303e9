//! # exactly
//!
//! Exactly-once stream processing on Apache Kafka, with pipelines written as Rust code.
//!
//! This facade re-exports the runtime ([`framework`], crate `exactly-framework`) and the
//! operators ([`operators`], crate `exactly-operators`). Start with the [`prelude`]:
//!
//! ```no_run
//! use exactly::prelude::*;
//!
//! # async fn run() -> exactly::Result<()> {
//! let pipeline = Pipeline::from_topic("lines", Serde::string())
//!     .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
//!     .filter(|word: &String| !word.is_empty())
//!     .map(|word: String| word.to_lowercase())
//!     .to_topic("words", Serde::bytes(), Serde::string());
//! let config = Config::new("words-app", "127.0.0.1:9092").with_env()?;
//! Runtime::new(config).run(pipeline).await
//! # }
//! ```
//!
//! The guarantees, the commit protocol and the architecture are described in `docs/`.
//! What tests, examples and benches need around a real broker is in the `exactly-testkit`
//! crate of the workspace (not part of this facade).

#![warn(missing_docs)]

/// The global allocator of every binary that uses this crate with its `mimalloc` feature
/// (see the feature's note in `Cargo.toml`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use exactly_framework as framework;
pub use exactly_operators as operators;

pub use exactly_framework::{
    Assignment, BadRecords, Codec, Config, Error, Guarantee, OnPanic, Pipeline, Record, Result,
    Runtime, Sasl, Secret, Security, Serde, Sink, Stream, Tls, Worker,
};

/// Everything a pipeline author needs in scope.
pub mod prelude {
    pub use exactly_framework::{
        BadRecords, Codec, Collector, Config, Context, Error, Guarantee, KeyedState, OnPanic,
        Operator, Partitioning, Pipeline, Record, Runtime, Serde, Sink, StateDescriptor, Stream,
    };
    pub use exactly_operators::{MemoryTable, StreamExt, Table, Windows};
}
