//! The operator trait: how user code sees records, and how it emits them.
//!
//! An [`Operator`] has one required method, [`Operator::process`]; lifecycle hooks default to
//! nothing. The runtime makes one instance per task (input partition), so an operator's
//! fields are naturally per-partition.

use crate::error::Result;
use crate::record::{Record, TaskId};

/// Receives the records an operator emits (the next operator, or the sink).
pub trait Collector<K, V> {
    /// Passes one record downstream.
    ///
    /// # Errors
    /// Whatever the downstream operators or the sink return (an encode error, a produce
    /// error); return it from [`Operator::process`] unchanged.
    fn collect(&mut self, record: Record<K, V>) -> Result<()>;
}

/// What an operator instance knows about where it runs.
#[derive(Debug, Clone)]
pub struct Context {
    task: TaskId,
    operator: String,
}

impl Context {
    /// A context for `operator` in `task`.
    pub fn new(task: TaskId, operator: impl Into<String>) -> Self {
        Context {
            task,
            operator: operator.into(),
        }
    }

    /// The task (input partition) this instance serves.
    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// The operator's name in the pipeline.
    pub fn operator(&self) -> &str {
        &self.operator
    }
}

/// A step of a pipeline: takes records of type `Record<K, V>`, emits `Record<OutKey, OutValue>`.
///
/// The runtime drives each instance through, in order: [`on_assign`](Operator::on_assign)
/// once, then [`process`](Operator::process) for each record of the task and
/// [`on_barrier`](Operator::on_barrier) before each commit, followed by
/// [`on_commit`](Operator::on_commit) or [`on_abort`](Operator::on_abort), and finally
/// [`on_revoke`](Operator::on_revoke) when the partition leaves this worker.
pub trait Operator<K, V>: Send + 'static {
    /// Key type of emitted records.
    type OutKey: Send + 'static;
    /// Value type of emitted records.
    type OutValue: Send + 'static;

    /// Handles one record, emitting any number of records to `out`.
    ///
    /// # Errors
    /// An error stops the worker (after aborting the open transaction, so nothing of the
    /// failed cycle becomes visible); return [`Error::Operator`](crate::Error::Operator) for
    /// your own failures.
    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut Context,
        out: &mut dyn Collector<Self::OutKey, Self::OutValue>,
    ) -> Result<()>;

    /// Called once before the first record of the task.
    ///
    /// # Errors
    /// As for `process`.
    fn on_assign(&mut self, ctx: &mut Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called before each commit: emit what must be part of this transaction.
    ///
    /// # Errors
    /// As for `process`; the cycle is aborted.
    fn on_barrier(
        &mut self,
        ctx: &mut Context,
        out: &mut dyn Collector<Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        let _ = (ctx, out);
        Ok(())
    }

    /// Called after the transaction that holds everything since the last barrier committed.
    ///
    /// # Errors
    /// As for `process`.
    fn on_commit(&mut self, ctx: &mut Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called after the transaction was aborted: forget everything since the last commit;
    /// the input is replayed from there.
    fn on_abort(&mut self, ctx: &mut Context) {
        let _ = ctx;
    }

    /// Called when the task leaves this worker (after its last commit or abort).
    fn on_revoke(&mut self, ctx: &mut Context) {
        let _ = ctx;
    }
}
