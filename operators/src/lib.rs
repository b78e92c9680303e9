//! # exactly-operators
//!
//! Operators for `exactly` pipelines, built only on the framework's public
//! [`Operator`](exactly_framework::Operator) trait — write your own the same way.
//!
//! Bring [`StreamExt`] into scope (or `use exactly::prelude::*`) to chain them:
//!
//! ```
//! use exactly_framework::{Pipeline, Serde};
//! use exactly_operators::StreamExt;
//!
//! let pipeline = Pipeline::from_topic("lines", Serde::string())
//!     .flat_map(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
//!     .filter(|word: &String| word.len() > 3)
//!     .map(|word: String| word.to_uppercase())
//!     .to_topic("long-words", Serde::bytes(), Serde::string());
//! assert_eq!(pipeline.input_topic(), "lines");
//! ```

#![warn(missing_docs)]

mod aggregate;
mod branch;
mod count;
mod dedup;
mod filter;
mod filter_map;
mod flat_map;
mod fold;
mod inspect;
pub mod join;
mod key_by;
mod map;
mod stream_ext;
pub mod stream_join;
mod stream_time;
pub mod text;
mod timestamp;
mod window;

pub use aggregate::{Aggregate, Reduce};
pub use branch::Branch;
pub use count::Count;
pub use dedup::Dedup;
pub use exactly_framework::table::{live_tables, GlobalTable, MemoryTable, Table};
pub use filter::Filter;
pub use filter_map::FilterMap;
pub use flat_map::FlatMap;
pub use fold::{Emit, PreAggregate, DEFAULT_CACHE_BYTES};
pub use inspect::Inspect;
pub use join::TableJoin;
pub use key_by::MapKey;
pub use map::Map;
pub use stream_ext::{Aggregated, KeyBy, StreamExt};
pub use timestamp::WithTimestamp;
pub use window::{Session, Time, WindowAggregate, Windowed, Windows};
