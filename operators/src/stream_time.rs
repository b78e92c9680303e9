//! Stream time: the largest record timestamp a task has seen, kept in keyed state so that
//! a replayed or restored task decides exactly as the first run did.

use exactly_framework::{Context, KeyedState, Result, StateDescriptor};

/// A task's stream time, committed with its cycle (state `stream-time`).
pub(crate) struct StreamTime {
    state: KeyedState<(), i64>,
    current: i64,
}

impl StreamTime {
    /// Opens the task's stream time (`i64::MIN` before the first timestamped record).
    pub(crate) fn open(ctx: &mut Context) -> Result<Self> {
        let state = ctx.keyed_state(&StateDescriptor::new("stream-time"))?;
        let current = state.get(&())?.unwrap_or(i64::MIN);
        Ok(StreamTime { state, current })
    }

    /// Advances to `timestamp` if it is later; returns the stream time and the record's
    /// event time (the stream time for a record without a timestamp).
    pub(crate) fn advance(&mut self, timestamp: Option<i64>) -> Result<(i64, i64)> {
        let event = timestamp.unwrap_or(self.current);
        if event > self.current {
            self.current = event;
            self.state.put(&(), &event)?;
        }
        Ok((self.current, event))
    }

    /// The stream time, once a timestamped record has arrived.
    pub(crate) fn current(&self) -> Option<i64> {
        (self.current != i64::MIN).then_some(self.current)
    }

    /// Back to the committed value (after an abort).
    pub(crate) fn reload(&mut self) -> Result<()> {
        self.current = self.state.get(&())?.unwrap_or(i64::MIN);
        Ok(())
    }
}
