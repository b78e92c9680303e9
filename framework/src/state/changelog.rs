//! Changelog topics: their names, and the writer a state uses at commit step 2 to put its
//! dirty keys into the task's changelog partition, in the open transaction.

use crate::error::Result;
use crate::producer::{Tracked, WorkerProducer};
use std::sync::Arc;

/// The changelog topic of a state: `{application_id}-{operator}-{state}-changelog`.
pub fn topic_name(application_id: &str, operator: &str, state: &str) -> String {
    format!("{application_id}-{operator}-{state}-changelog")
}

/// Writes one state's changes of one task to its changelog partition.
pub(crate) struct ChangelogWriter {
    output: Arc<WorkerProducer>,
    topic: String,
    partition: i32,
    tracked: Tracked,
}

impl ChangelogWriter {
    /// A writer for `topic`/`partition`; the producer tracks what it delivers there.
    pub(crate) fn new(output: Arc<WorkerProducer>, topic: String, partition: i32) -> Self {
        let tracked = output.track(&topic, partition);
        ChangelogWriter {
            output,
            topic,
            partition,
            tracked,
        }
    }

    /// Produces `key`'s last value (`None`: a tombstone) in the open transaction.
    ///
    /// # Errors
    /// A produce error.
    pub(crate) fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.output.send(
            &self.topic,
            Some(self.partition),
            Some(key),
            value,
            None,
            None,
            Some(self.tracked),
        )
    }

    /// The offset after the last record delivered to the partition, if any.
    pub(crate) fn end(&self) -> Option<i64> {
        self.output.delivered_end(self.tracked)
    }
}
