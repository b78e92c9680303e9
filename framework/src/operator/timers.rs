//! Timers: event-time timers kept in keyed state and fired in stream-time order, and a
//! wall-clock timer fired inside a commit cycle (Flink's timers, Kafka Streams'
//! punctuators). See [`Context::schedule_event_time`] and [`Context::schedule_wall_clock`].
//!
//! *Stream time* is the largest input timestamp the operator's task has seen, committed with
//! the task's state, so a replayed or restored task fires its timers where the first run did.
//! An event-time timer fires once stream time reaches its time: before the record that moved
//! stream time there is processed, and again after it (for a timer that record scheduled in
//! the past). Its effects commit with the cycle; an aborted cycle brings the timer back.
//!
//! A wall-clock timer fires every interval, whether records arrive or not: the worker opens a
//! cycle for an idle task to fire it, so what it emits commits like a record's effects. It is
//! not persisted: a task that starts (or restarts after an abort) fires it one interval later.

use super::{Collector, Context, Operator};
use crate::error::{Error, Result};
use crate::record::{Origin, Record, TaskId};
use crate::state::{KeyedState, StateDescriptor};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What a timer is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Stream time: the task's largest input timestamp.
    EventTime,
    /// The wall clock.
    WallClock,
}

/// A timer that fired, passed to [`Operator::on_timer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// What it was measured against.
    pub kind: TimerKind,
    /// Ms since the epoch: the time it was scheduled for (event time), or the wall clock
    /// when it fired.
    pub time: i64,
    /// The key it was scheduled for, encoded (empty for a wall-clock timer).
    key: Vec<u8>,
    task: TaskId,
}

impl Timer {
    /// The key the timer was scheduled for (`None` for a wall-clock timer); `K` must be the
    /// type given to [`Context::schedule_event_time`].
    ///
    /// # Errors
    /// [`Error::State`] when the stored key does not decode as `K`.
    pub fn key<K: DeserializeOwned>(&self) -> Result<Option<K>> {
        if self.kind == TimerKind::WallClock {
            return Ok(None);
        }
        bincode::serde::decode_from_slice(&self.key, bincode::config::standard())
            .map(|(k, _)| Some(k))
            .map_err(|e| Error::State {
                op: "decode timer key",
                message: e.to_string(),
            })
    }

    /// A record to emit from [`Operator::on_timer`]: timestamped with the timer's time and
    /// coming from the task's input partition (offset -1: no input record).
    pub fn record<K, V>(&self, key: Option<K>, value: V) -> Record<K, V> {
        Record {
            key,
            value,
            timestamp: Some(self.time),
            headers: Vec::new(),
            origin: Origin {
                topic: self.task.topic.clone(),
                partition: self.task.partition,
                offset: -1,
            },
        }
    }
}

/// The timers of one operator instance.
#[derive(Default)]
pub(crate) struct Timers {
    event: Option<EventTimers>,
    wall: Option<WallClock>,
}

/// Event-time timers: pending ones in state `timers` keyed by (time, encoded key), stream
/// time in state `timers-stream-time`, and an in-memory index of the pending ones.
struct EventTimers {
    pending: KeyedState<(i64, Vec<u8>), ()>,
    time: KeyedState<(), i64>,
    stream_time: i64,
    index: BTreeSet<(i64, Vec<u8>)>,
    /// The index and stream time must be read again from state (after an abort).
    stale: bool,
}

struct WallClock {
    every: Duration,
    next: Instant,
}

fn encode<K: Serialize>(key: &K) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(key, bincode::config::standard()).map_err(|e| Error::State {
        op: "encode timer key",
        message: e.to_string(),
    })
}

impl EventTimers {
    fn fresh(&mut self) -> Result<&mut Self> {
        if self.stale {
            self.index = self
                .pending
                .entries()?
                .into_iter()
                .map(|(k, ())| k)
                .collect();
            self.stream_time = self.time.get(&())?.unwrap_or(i64::MIN);
            self.stale = false;
        }
        Ok(self)
    }
}

impl Timers {
    fn event(&mut self) -> Result<&mut EventTimers> {
        match &mut self.event {
            Some(e) => e.fresh(),
            None => Err(Error::config(
                "timers",
                "event-time timers are not open: call `ctx.enable_timers()` in the operator's \
                 constructor (`Stream::apply_with`) or `on_assign`",
            )),
        }
    }

    /// Whether event-time timers are open (stream time is then tracked).
    #[inline]
    pub(crate) fn tracks_event_time(&self) -> bool {
        self.event.is_some()
    }

    /// Moves stream time to `timestamp` if it is later.
    pub(crate) fn advance(&mut self, timestamp: Option<i64>) -> Result<()> {
        let Some(t) = timestamp else { return Ok(()) };
        let e = self.event()?;
        if t > e.stream_time {
            e.stream_time = t;
            e.time.put(&(), &t)?;
        }
        Ok(())
    }

    /// Removes and returns the earliest event-time timer that stream time has reached.
    fn pop_due(&mut self, task: &TaskId) -> Result<Option<Timer>> {
        let e = self.event()?;
        let Some(first) = e.index.first() else {
            return Ok(None);
        };
        if first.0 > e.stream_time {
            return Ok(None);
        }
        let (time, key) = e.index.pop_first().expect("checked above");
        e.pending.delete(&(time, key.clone()))?;
        Ok(Some(Timer {
            kind: TimerKind::EventTime,
            time,
            key,
            task: task.clone(),
        }))
    }

    /// Whether the wall-clock timer is due at `now`.
    #[inline]
    pub(crate) fn wall_clock_due(&self, now: Instant) -> bool {
        self.wall.as_ref().is_some_and(|w| now >= w.next)
    }

    /// After an abort: state is read again before the next use.
    pub(crate) fn aborted(&mut self) {
        if let Some(e) = &mut self.event {
            e.stale = true;
        }
    }
}

impl Context {
    /// Opens this operator's event-time timers (states `timers` and `timers-stream-time`,
    /// restored like any keyed state). Call it in the operator's constructor
    /// ([`Stream::apply_with`](crate::Stream::apply_with)) or in
    /// [`Operator::on_assign`]; opening it twice is harmless.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn enable_timers(&mut self) -> Result<()> {
        if self.timers.event.is_none() {
            let pending = self.keyed_state(&StateDescriptor::new("timers"))?;
            let time = self.keyed_state(&StateDescriptor::new("timers-stream-time"))?;
            self.timers.event = Some(EventTimers {
                pending,
                time,
                stream_time: i64::MIN,
                index: BTreeSet::new(),
                stale: true,
            });
        }
        Ok(())
    }

    /// Schedules an event-time timer for `key` at `time` (ms since the epoch):
    /// [`Operator::on_timer`] is called once the task's stream time reaches `time` (at once,
    /// after the current record, if it already has). One timer per (key, time): scheduling
    /// it again changes nothing. Committed with the cycle, restored with the task.
    ///
    /// # Errors
    /// [`Error::Config`] unless [`enable_timers`](Self::enable_timers) was called;
    /// [`Error::State`] when the key cannot be encoded.
    pub fn schedule_event_time<K: Serialize>(&mut self, key: &K, time: i64) -> Result<()> {
        let key = encode(key)?;
        let e = self.timers.event()?;
        if e.index.insert((time, key.clone())) {
            e.pending.put(&(time, key), &())?;
        }
        Ok(())
    }

    /// Cancels the event-time timer for `key` at `time`, if one is pending.
    ///
    /// # Errors
    /// As [`schedule_event_time`](Self::schedule_event_time).
    pub fn cancel_event_time<K: Serialize>(&mut self, key: &K, time: i64) -> Result<()> {
        let key = encode(key)?;
        let e = self.timers.event()?;
        if e.index.remove(&(time, key.clone())) {
            e.pending.delete(&(time, key))?;
        }
        Ok(())
    }

    /// The task's stream time (the largest input timestamp seen), once event-time timers
    /// are open and a timestamped record has arrived.
    pub fn stream_time(&mut self) -> Option<i64> {
        let e = self.timers.event().ok()?;
        (e.stream_time != i64::MIN).then_some(e.stream_time)
    }

    /// Calls [`Operator::on_timer`] every `every` of wall-clock time from now on, whether
    /// records arrive or not, inside a commit cycle (replaces an earlier interval). Not
    /// persisted: call it in the constructor or in [`Operator::on_assign`].
    ///
    /// # Panics
    /// When `every` is zero.
    pub fn schedule_wall_clock(&mut self, every: Duration) {
        assert!(
            !every.is_zero(),
            "a wall-clock timer needs a non-zero interval"
        );
        self.timers.wall = Some(WallClock {
            every,
            next: Instant::now() + every,
        });
    }

    /// Whether stream time is tracked for event-time timers.
    #[inline]
    pub(crate) fn tracks_event_time(&self) -> bool {
        self.timers.tracks_event_time()
    }

    /// Moves stream time to `timestamp` if it is later.
    pub(crate) fn advance_stream_time(&mut self, timestamp: Option<i64>) -> Result<()> {
        self.timers.advance(timestamp)
    }

    /// Whether the wall-clock timer is due at `now`.
    #[inline]
    pub(crate) fn wall_clock_due(&self, now: Instant) -> bool {
        self.timers.wall_clock_due(now)
    }

    /// Stops the wall-clock timer.
    pub fn cancel_wall_clock(&mut self) {
        self.timers.wall = None;
    }
}

/// Fires `op`'s event-time timers that stream time has reached, earliest first.
pub(crate) fn fire_event_time<K, V, O: Operator<K, V>>(
    op: &mut O,
    ctx: &mut Context,
    out: &mut dyn Collector<O::OutKey, O::OutValue>,
) -> Result<()> {
    if !ctx.timers.tracks_event_time() {
        return Ok(());
    }
    let task = ctx.task().clone();
    while let Some(timer) = ctx.timers.pop_due(&task)? {
        op.on_timer(&timer, ctx, out)?;
    }
    Ok(())
}

/// Fires `op`'s wall-clock timer if it is due at `now` (or at once when `now` is `None`).
pub(crate) fn fire_wall_clock<K, V, O: Operator<K, V>>(
    op: &mut O,
    ctx: &mut Context,
    out: &mut dyn Collector<O::OutKey, O::OutValue>,
    now: Option<Instant>,
) -> Result<()> {
    let Some(wall) = &mut ctx.timers.wall else {
        return Ok(());
    };
    let now = match now {
        Some(now) if now < wall.next => return Ok(()),
        Some(now) => now,
        None => Instant::now(),
    };
    wall.next = now + wall.every;
    let timer = Timer {
        kind: TimerKind::WallClock,
        time: crate::record::now_ms() as i64,
        key: Vec::new(),
        task: ctx.task().clone(),
    };
    op.on_timer(&timer, ctx, out)
}

#[cfg(test)]
mod tests;
