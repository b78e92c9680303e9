//! Testing without Kafka: an operator harness ([`Harness`]: records and barriers in,
//! records out) and a whole-pipeline driver ([`TestDriver`]).
//!
//! Enabled by the `testing` feature. Drives one operator instance exactly as the runtime
//! drives it in one task: `on_assign` before the first record, `on_barrier` at each
//! [`Harness::barrier`], then `on_commit` or `on_abort`.
//!
//! ```
//! use exactly_framework::testing::Harness;
//! use exactly_framework::{Collector, Context, Operator, Record, Result};
//!
//! struct Upper;
//! impl Operator<(), String> for Upper {
//!     type OutKey = ();
//!     type OutValue = String;
//!     fn process(&mut self, r: Record<(), String>, _: &mut Context, out: &mut dyn Collector<(), String>) -> Result<()> {
//!         let v = r.value.to_uppercase();
//!         out.collect(r.with_value(v))
//!     }
//! }
//!
//! let mut h = Harness::new(Upper);
//! h.push(None, "a".to_string()).unwrap();
//! assert_eq!(h.values(), vec!["A".to_string()]);
//! ```

mod driver;

pub use driver::{TestDriver, TestRecord};

use crate::error::Result;
use crate::operator::{fire_event_time, fire_wall_clock, Collector, Context, Operator, SideRecord};
use crate::record::{Origin, Record, TaskId};
use std::marker::PhantomData;
use std::sync::Arc;

struct VecCollector<K, V>(Vec<Record<K, V>>);

impl<K, V> Collector<K, V> for VecCollector<K, V> {
    fn collect(&mut self, record: Record<K, V>) -> Result<()> {
        self.0.push(record);
        Ok(())
    }
}

/// Runs one operator instance as task `test/0`.
pub struct Harness<K, V, O: Operator<K, V>> {
    op: O,
    ctx: Context,
    out: VecCollector<O::OutKey, O::OutValue>,
    assigned: bool,
    next_offset: i64,
    _in: PhantomData<fn(K, V)>,
}

impl<K, V, O: Operator<K, V>> Harness<K, V, O> {
    /// A harness around `op`.
    pub fn new(op: O) -> Self {
        Self::with_context(op, Self::context())
    }

    /// A harness around the operator `constructor` builds from the task's context (in-memory
    /// state), as [`Stream::apply_with`](crate::Stream::apply_with) builds it in a worker.
    ///
    /// # Errors
    /// The constructor's error.
    pub fn build(constructor: impl FnOnce(&mut Context) -> Result<O>) -> Result<Self> {
        let mut ctx = Self::context();
        let op = constructor(&mut ctx)?;
        Ok(Self::with_context(op, ctx))
    }

    fn context() -> Context {
        let task = TaskId {
            topic: Arc::from("test"),
            partition: 0,
        };
        Context::new(task, "under-test")
    }

    fn with_context(op: O, ctx: Context) -> Self {
        Harness {
            op,
            ctx,
            out: VecCollector(Vec::new()),
            assigned: false,
            next_offset: 0,
            _in: PhantomData,
        }
    }

    fn assign(&mut self) -> Result<()> {
        if !self.assigned {
            self.op.on_assign(&mut self.ctx)?;
            self.assigned = true;
        }
        Ok(())
    }

    /// Processes a record with this key and value (offsets count from 0).
    ///
    /// # Errors
    /// The operator's error.
    pub fn push(&mut self, key: Option<K>, value: V) -> Result<()> {
        self.push_with_timestamp(key, value, None)
    }

    /// Processes a record with this key, value and timestamp (ms since the epoch): the
    /// event time of windows.
    ///
    /// # Errors
    /// The operator's error.
    pub fn push_at(&mut self, key: Option<K>, value: V, timestamp: i64) -> Result<()> {
        self.push_with_timestamp(key, value, Some(timestamp))
    }

    fn push_with_timestamp(
        &mut self,
        key: Option<K>,
        value: V,
        timestamp: Option<i64>,
    ) -> Result<()> {
        let record = Record {
            key,
            value,
            timestamp,
            headers: Vec::new(),
            origin: Origin {
                topic: self.ctx.task().topic.clone(),
                partition: 0,
                offset: self.next_offset,
            },
        };
        self.push_record(record)
    }

    /// Processes a complete record.
    ///
    /// # Errors
    /// The operator's error.
    pub fn push_record(&mut self, record: Record<K, V>) -> Result<()> {
        self.assign()?;
        self.next_offset = record.origin.offset + 1;
        let (op, ctx, out) = (&mut self.op, &mut self.ctx, &mut self.out);
        if !ctx.tracks_event_time() {
            return op.process(record, ctx, out);
        }
        // As a worker does: timers the record's time reaches fire before it, those it
        // scheduled at or before stream time right after it.
        ctx.advance_stream_time(record.timestamp)?;
        fire_event_time(op, ctx, out)?;
        op.process(record, ctx, out)?;
        fire_event_time(op, ctx, out)
    }

    /// Fires the operator's wall-clock timer now, as if its interval had passed
    /// ([`Context::schedule_wall_clock`]); nothing happens without one.
    ///
    /// # Errors
    /// The operator's error.
    pub fn fire_wall_clock(&mut self) -> Result<()> {
        self.assign()?;
        fire_wall_clock(&mut self.op, &mut self.ctx, &mut self.out, None)
    }

    /// The task's stream time, once event-time timers are open and a timestamped record
    /// has arrived ([`Context::stream_time`]).
    pub fn stream_time(&mut self) -> Option<i64> {
        self.ctx.stream_time()
    }

    /// A commit barrier followed by a successful commit.
    ///
    /// # Errors
    /// The operator's error.
    pub fn barrier(&mut self) -> Result<()> {
        self.assign()?;
        self.op.on_barrier(&mut self.ctx, &mut self.out)?;
        self.ctx.state_barrier()?;
        self.ctx.state_commit(self.next_offset)?;
        self.op.on_commit(&mut self.ctx)
    }

    /// An aborted cycle: the operator forgets what it did since the last commit.
    pub fn abort(&mut self) {
        self.ctx.state_abort();
        self.op.on_abort(&mut self.ctx);
    }

    /// The records emitted so far.
    pub fn output(&self) -> &[Record<O::OutKey, O::OutValue>] {
        &self.out.0
    }

    /// Takes the records emitted so far.
    pub fn take_output(&mut self) -> Vec<Record<O::OutKey, O::OutValue>> {
        std::mem::take(&mut self.out.0)
    }

    /// The values emitted so far (cloned).
    pub fn values(&self) -> Vec<O::OutValue>
    where
        O::OutValue: Clone,
    {
        self.out.0.iter().map(|r| r.value.clone()).collect()
    }

    /// The records the operator wrote to side topics ([`Context::emit_to`]).
    pub fn side_records(&self) -> &[SideRecord] {
        self.ctx.side_records()
    }

    /// The operator, to inspect its fields.
    pub fn operator(&self) -> &O {
        &self.op
    }
}
