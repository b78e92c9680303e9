//! The per-task chain the builder assembles: source decode → operators → sink.
//!
//! Each node forwards the commit-cycle signals (assign, barrier, commit, abort, revoke)
//! downstream after handling them itself, so upstream emissions reach downstream before it
//! flushes. Every call into user code (operators, codecs) is guarded: a panic becomes
//! [`Error::Panicked`] and poisons the worker ([`crate::poison`]).

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::operator::{fire_event_time, fire_wall_clock, Collector, Context, Operator};
use crate::poison::{self, Poison};
use crate::producer::{Output, Sink};
use crate::record::{Header, Origin, Record};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// An input message as the head of a chain reads it: a Kafka message, or a record of the
/// test driver's in-memory topics.
pub(crate) trait InputMessage {
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    /// Ms since the epoch, if it has a timestamp.
    fn timestamp(&self) -> Option<i64>;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn headers(&self) -> Vec<Header>;
}

impl InputMessage for BorrowedMessage<'_> {
    #[inline]
    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }
    #[inline]
    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }
    #[inline]
    fn timestamp(&self) -> Option<i64> {
        Message::timestamp(self).to_millis()
    }
    #[inline]
    fn partition(&self) -> i32 {
        Message::partition(self)
    }
    #[inline]
    fn offset(&self) -> i64 {
        Message::offset(self)
    }
    fn headers(&self) -> Vec<Header> {
        match Message::headers(self) {
            None => Vec::new(),
            Some(hs) => hs
                .iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }
}

/// A typed link of the chain.
pub(crate) trait Node<K, V>: Send {
    /// Before the first record of the task: operators open their state (restoring it).
    fn assign(&mut self) -> Result<()>;
    fn push(&mut self, record: Record<K, V>) -> Result<()>;
    fn barrier(&mut self) -> Result<()>;
    fn commit(&mut self, input_offset: i64) -> Result<()>;
    fn abort(&mut self);
    fn revoke(&mut self);
    /// Whether a wall-clock timer of the chain is due at `now`.
    fn wall_clock_due(&self, now: Instant) -> bool;
    /// Fires the chain's wall-clock timers that are due at `now`.
    fn fire_wall_clock(&mut self, now: Instant) -> Result<()>;
}

/// The head of a chain: takes raw Kafka messages.
pub(crate) trait RawNode: Send {
    /// Before the first record of the task: every operator's `on_assign` (state restores).
    fn assign(&mut self) -> Result<()>;
    fn push_message(&mut self, message: &dyn InputMessage) -> Result<()>;
    fn barrier(&mut self) -> Result<()>;
    fn commit(&mut self, input_offset: i64) -> Result<()>;
    fn abort(&mut self);
    fn revoke(&mut self);
    /// Whether a wall-clock timer of the chain is due at `now`.
    fn wall_clock_due(&self, now: Instant) -> bool;
    /// Fires the chain's wall-clock timers that are due at `now`.
    fn fire_wall_clock(&mut self, now: Instant) -> Result<()>;
    /// The node as `Any` (a tee finds its branch's chain so).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// Lets an operator emit into the rest of the chain.
pub(crate) struct Downstream<K, V>(pub(crate) Box<dyn Node<K, V>>);

impl<K, V> Collector<K, V> for Downstream<K, V> {
    #[inline]
    fn collect(&mut self, record: Record<K, V>) -> Result<()> {
        self.0.push(record)
    }
}

/// One operator instance with its context and the rest of the chain.
pub(crate) struct OperatorNode<O: Operator<K, V>, K, V> {
    pub(crate) op: O,
    pub(crate) ctx: Context,
    pub(crate) next: Downstream<O::OutKey, O::OutValue>,
    pub(crate) assigned: bool,
    pub(crate) poison: Arc<Poison>,
    pub(crate) _in: std::marker::PhantomData<fn(K, V)>,
}

impl<O: Operator<K, V>, K, V> OperatorNode<O, K, V> {
    /// The error for a panic of this operator's code `at` somewhere.
    fn panicked(&self, at: String, payload: Box<dyn std::any::Any + Send>) -> Error {
        self.poison
            .record(self.ctx.operator(), at, poison::message(payload.as_ref()))
    }

    /// `at` for a hook of this task.
    fn in_hook(&self, hook: &str) -> String {
        format!("in {hook} of task {}", self.ctx.task())
    }
}

impl<O: Operator<K, V>, K: 'static, V: 'static> Node<K, V> for OperatorNode<O, K, V> {
    fn assign(&mut self) -> Result<()> {
        if !self.assigned {
            let (op, ctx) = (&mut self.op, &mut self.ctx);
            match catch_unwind(AssertUnwindSafe(|| op.on_assign(ctx))) {
                Ok(r) => r?,
                Err(p) => return Err(self.panicked(self.in_hook("on_assign"), p)),
            }
            self.assigned = true;
        }
        self.next.0.assign()
    }
    #[inline]
    fn push(&mut self, record: Record<K, V>) -> Result<()> {
        if !self.assigned {
            self.assign()?;
        }
        let offset = record.origin.offset;
        let (op, ctx, next) = (&mut self.op, &mut self.ctx, &mut self.next);
        match catch_unwind(AssertUnwindSafe(|| {
            if !ctx.tracks_event_time() {
                return op.process(record, ctx, next);
            }
            // Timers that this record's time reaches fire before it, and those it
            // scheduled at or before stream time right after it.
            ctx.advance_stream_time(record.timestamp)?;
            fire_event_time(op, ctx, next)?;
            op.process(record, ctx, next)?;
            fire_event_time(op, ctx, next)
        })) {
            Ok(r) => r,
            Err(p) => Err(self.panicked(format!("on record {}@{offset}", self.ctx.task()), p)),
        }
    }
    fn barrier(&mut self) -> Result<()> {
        if self.assigned {
            let (op, ctx, next) = (&mut self.op, &mut self.ctx, &mut self.next);
            match catch_unwind(AssertUnwindSafe(|| op.on_barrier(ctx, next))) {
                Ok(r) => r?,
                Err(p) => return Err(self.panicked(self.in_hook("on_barrier"), p)),
            }
            self.ctx.state_barrier()?;
        }
        self.next.0.barrier()
    }
    fn commit(&mut self, input_offset: i64) -> Result<()> {
        if self.assigned {
            self.ctx.state_commit(input_offset)?;
            let (op, ctx) = (&mut self.op, &mut self.ctx);
            match catch_unwind(AssertUnwindSafe(|| op.on_commit(ctx))) {
                Ok(r) => r?,
                Err(p) => return Err(self.panicked(self.in_hook("on_commit"), p)),
            }
        }
        self.next.0.commit(input_offset)
    }
    fn abort(&mut self) {
        if self.assigned {
            self.ctx.state_abort();
            let (op, ctx) = (&mut self.op, &mut self.ctx);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| op.on_abort(ctx))) {
                let _ = self.panicked(self.in_hook("on_abort"), p);
            }
        }
        self.next.0.abort()
    }
    fn revoke(&mut self) {
        if self.assigned {
            let (op, ctx) = (&mut self.op, &mut self.ctx);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| op.on_revoke(ctx))) {
                let _ = self.panicked(self.in_hook("on_revoke"), p);
            }
        }
        self.next.0.revoke()
    }
    fn wall_clock_due(&self, now: Instant) -> bool {
        (self.assigned && self.ctx.wall_clock_due(now)) || self.next.0.wall_clock_due(now)
    }
    fn fire_wall_clock(&mut self, now: Instant) -> Result<()> {
        if self.assigned && self.ctx.wall_clock_due(now) {
            let (op, ctx, next) = (&mut self.op, &mut self.ctx, &mut self.next);
            match catch_unwind(AssertUnwindSafe(|| {
                fire_wall_clock(op, ctx, next, Some(now))
            })) {
                Ok(r) => r?,
                Err(p) => return Err(self.panicked(self.in_hook("on_timer"), p)),
            }
        }
        self.next.0.fire_wall_clock(now)
    }
}

/// Decodes Kafka messages into typed records.
pub(crate) struct SourceNode<K, V> {
    pub(crate) topic: Arc<str>,
    pub(crate) key: Arc<dyn Codec<K>>,
    pub(crate) value: Arc<dyn Codec<V>>,
    pub(crate) next: Box<dyn Node<K, V>>,
    pub(crate) poison: Arc<Poison>,
}

impl<K: 'static, V: 'static> SourceNode<K, V> {
    /// Decodes `m` with the (user's) codecs.
    fn decode(&self, m: &dyn InputMessage) -> Result<Record<K, V>> {
        let decode_error = |part: &'static str, message: String| Error::Decode {
            part,
            topic: self.topic.to_string(),
            partition: m.partition(),
            offset: m.offset(),
            message,
        };
        let key = match m.key() {
            None => None,
            Some(bytes) => Some(
                self.key
                    .decode(Some(bytes))
                    .map_err(|e| decode_error("key", e))?,
            ),
        };
        let value = self
            .value
            .decode(m.payload())
            .map_err(|e| decode_error("value", e))?;
        Ok(Record {
            key,
            value,
            timestamp: m.timestamp(),
            headers: m.headers(),
            origin: Origin {
                topic: self.topic.clone(),
                partition: m.partition(),
                offset: m.offset(),
            },
        })
    }
}

impl<K: 'static, V: 'static> RawNode for SourceNode<K, V> {
    fn assign(&mut self) -> Result<()> {
        self.next.assign()
    }
    fn push_message(&mut self, m: &dyn InputMessage) -> Result<()> {
        let record = poison::guard(
            &self.poison,
            || self.decode(m),
            || {
                (
                    format!("source codec of {}", self.topic),
                    format!("on record {}/{}@{}", self.topic, m.partition(), m.offset()),
                )
            },
        )?;
        self.next.push(record)
    }
    fn barrier(&mut self) -> Result<()> {
        self.next.barrier()
    }
    fn commit(&mut self, input_offset: i64) -> Result<()> {
        self.next.commit(input_offset)
    }
    fn abort(&mut self) {
        self.next.abort()
    }
    fn revoke(&mut self) {
        self.next.revoke()
    }
    fn wall_clock_due(&self, now: Instant) -> bool {
        self.next.wall_clock_due(now)
    }
    fn fire_wall_clock(&mut self, now: Instant) -> Result<()> {
        self.next.fire_wall_clock(now)
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// The last node of a chain.
pub(crate) struct SinkNode<K, V> {
    /// The resolved topic name.
    pub(crate) topic: String,
    pub(crate) sink: Arc<Sink<K, V>>,
    pub(crate) output: Arc<dyn Output>,
    pub(crate) poison: Arc<Poison>,
}

impl<K: 'static, V: 'static> Node<K, V> for SinkNode<K, V> {
    fn assign(&mut self) -> Result<()> {
        Ok(())
    }
    fn push(&mut self, r: Record<K, V>) -> Result<()> {
        let encoded = poison::guard(
            &self.poison,
            || self.sink.encode(&self.topic, &r),
            || {
                (
                    format!("sink codec of {}", self.topic),
                    format!(
                        "on record {}/{}@{}",
                        r.origin.topic, r.origin.partition, r.origin.offset
                    ),
                )
            },
        )?;
        self.output.send_encoded(&self.topic, encoded)
    }
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }
    fn commit(&mut self, _input_offset: i64) -> Result<()> {
        Ok(())
    }
    fn abort(&mut self) {}
    fn revoke(&mut self) {}
    fn wall_clock_due(&self, _now: Instant) -> bool {
        false
    }
    fn fire_wall_clock(&mut self, _now: Instant) -> Result<()> {
        Ok(())
    }
}
