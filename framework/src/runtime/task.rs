//! A task: one assigned input partition, its operator chain and its offsets.

use crate::pipeline::node::RawNode;
use crate::record::TaskId;

/// One input partition being processed by this worker.
pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) chain: Box<dyn RawNode>,
    /// Offset of the first record processed in the open cycle: where to rewind on abort.
    pub(crate) cycle_start: Option<i64>,
    /// Next offset to consume (last processed + 1): the offset to commit.
    pub(crate) next_offset: i64,
}
