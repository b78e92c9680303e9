//! Interactive queries: the committed values of a worker's keyed states over HTTP, and the
//! way to the instance that owns a key.
//!
//! The state layer's registry (`state::queryable`) knows which states and partitions this
//! worker holds and how to decode a key from a URL; `directory` finds a partition's owner
//! and its query address in the consumer group's description; `server` answers HTTP
//! (feature `query`). Queries read what the local store holds for a task: values of committed cycles
//! only, never a cycle's open overlay.

pub(crate) mod directory;
#[cfg(feature = "query")]
pub(crate) mod server;
