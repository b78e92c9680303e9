//! A task: one assigned input partition, its operator chain and its offsets; and the
//! worker's tasks as the commit cycle's [`State`].

use crate::commit::{Position, State};
use crate::error::Result;
use crate::pipeline::node::RawNode;
use crate::record::TaskId;
use std::collections::{BTreeMap, BTreeSet};

/// One input partition being processed by this worker.
pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) chain: Box<dyn RawNode>,
    /// Offset of the first record of the open cycle: where to rewind on abort.
    pub(crate) cycle_start: Option<i64>,
    /// Next offset to consume (last processed + 1): the offset to commit.
    pub(crate) next_offset: i64,
    /// The group's committed offset when the task started (or after its last commit):
    /// nothing below it may be processed again.
    pub(crate) committed: i64,
}

/// The tasks of a worker, by input partition.
pub(crate) type Tasks = BTreeMap<TaskId, Task>;

impl State for Tasks {
    fn barrier(&mut self) -> Result<()> {
        for task in self.values_mut() {
            if task.cycle_start.is_some() {
                task.chain.barrier()?;
            }
        }
        Ok(())
    }

    fn offsets(&self) -> Vec<Position> {
        self.values()
            .filter(|t| t.cycle_start.is_some())
            .map(|t| (t.id.clone(), t.next_offset))
            .collect()
    }

    fn committed(&mut self) -> Result<()> {
        // Tasks without records in the cycle have nothing to apply or checkpoint.
        for task in self.values_mut() {
            if task.cycle_start.take().is_some() {
                task.committed = task.next_offset;
                task.chain.commit(task.next_offset)?;
            }
        }
        Ok(())
    }

    fn aborted(&mut self, leaving: &BTreeSet<TaskId>) -> Vec<Position> {
        let mut rewind = Vec::new();
        for task in self.values_mut() {
            task.chain.abort();
            if let Some(start) = task.cycle_start.take() {
                task.next_offset = start;
                if !leaving.contains(&task.id) {
                    rewind.push((task.id.clone(), start));
                }
            }
        }
        rewind
    }
}
