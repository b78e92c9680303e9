//! Event-time windows: tumbling, hopping and session windows over keyed aggregates, with
//! watermarks, allowed lateness and late records counted or sent to a side topic.
//!
//! # Time
//! Each task keeps a *stream time*: the largest record timestamp it has seen (committed
//! with the task's state, so replays and restores decide as the first run did). The
//! *watermark* is stream time minus the bounded out-of-orderness. A window `[start, end)`
//! closes when the watermark reaches `end + allowed lateness`: its final result is emitted
//! and its state deleted. A record is *late* when every window it belongs to has closed: it
//! is counted (`exactly_window_late_records_total{operator}`) and, if configured, written to
//! a side topic in the same transaction. A record without a timestamp counts at the stream
//! time.
//!
//! Stream time only moves with records: a task whose partition receives nothing closes
//! nothing (as in Kafka Streams), unless [`Windows::close_when_idle`] lets it move on with
//! the wall clock while the input is idle. With a repartition before the window, each partition
//! mixes records from every upstream task: size the out-of-orderness for that.

use crate::stream_time::StreamTime;
use exactly_framework::{
    Collector, Context, Error, KeyedState, Operator, Origin, Record, Result, Sink, StateDescriptor,
    Timer, TimerKind,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// The key of a window result: the record key and the window's bounds (ms since the
/// epoch). Time windows are `[start, end)`; a session's `end` is its last record's
/// timestamp (inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Windowed<K> {
    /// The record key (`None` for records without a key).
    pub key: Option<K>,
    /// Window start, ms.
    pub start: i64,
    /// Window end, ms.
    pub end: i64,
}

/// Marks [`Windows`] of fixed size: tumbling or hopping.
#[derive(Debug, Clone, Copy)]
pub struct Time;
/// Marks session [`Windows`]: activity separated by gaps.
#[derive(Debug, Clone, Copy)]
pub struct Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Fixed { size: i64, advance: i64 },
    Session { gap: i64 },
}

/// How records are grouped in time, and when results are final.
///
/// ```
/// use exactly_operators::Windows;
/// use std::time::Duration;
///
/// let w: Windows<String, String, _> = Windows::tumbling(Duration::from_secs(60))
///     .out_of_orderness(Duration::from_secs(5))   // watermark = stream time - 5 s
///     .allowed_lateness(Duration::from_secs(30))  // keep windows open 30 s more
///     .emit_updates();                            // also emit every intermediate value
/// ```
pub struct Windows<K, V, Kind = Time> {
    shape: Shape,
    out_of_orderness: i64,
    lateness: i64,
    emit_updates: bool,
    late: Option<Arc<Sink<K, V>>>,
    /// Wall-clock inactivity after which stream time moves on by itself.
    idle: Option<Duration>,
    _kind: PhantomData<fn() -> Kind>,
}

impl<K, V, Kind> Clone for Windows<K, V, Kind> {
    fn clone(&self) -> Self {
        Windows {
            shape: self.shape,
            out_of_orderness: self.out_of_orderness,
            lateness: self.lateness,
            emit_updates: self.emit_updates,
            late: self.late.clone(),
            idle: self.idle,
            _kind: PhantomData,
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<K, V> Windows<K, V, Time> {
    /// Adjacent windows of `size`: each record belongs to exactly one.
    ///
    /// # Panics
    /// When `size` is under a millisecond.
    pub fn tumbling(size: Duration) -> Self {
        Self::hopping(size, size)
    }

    /// Windows of `size` starting every `advance`: each record belongs to
    /// `size / advance` of them.
    ///
    /// # Panics
    /// When `size` or `advance` is under a millisecond, or `advance` exceeds `size`.
    pub fn hopping(size: Duration, advance: Duration) -> Self {
        let (size, advance) = (ms(size), ms(advance));
        assert!(
            size >= 1 && advance >= 1 && advance <= size,
            "windows need 1 ms <= advance <= size (got size {size} ms, advance {advance} ms)"
        );
        Self::new(Shape::Fixed { size, advance })
    }
}

impl<K, V> Windows<K, V, Session> {
    /// Sessions: records of a key less than `gap` apart belong to one window.
    ///
    /// # Panics
    /// When `gap` is under a millisecond.
    pub fn session(gap: Duration) -> Self {
        let gap = ms(gap);
        assert!(gap >= 1, "a session gap must be at least 1 ms");
        Self::new(Shape::Session { gap })
    }
}

impl<K, V, Kind> Windows<K, V, Kind> {
    fn new(shape: Shape) -> Self {
        Windows {
            shape,
            out_of_orderness: 0,
            lateness: 0,
            emit_updates: false,
            late: None,
            idle: None,
            _kind: PhantomData,
        }
    }

    /// How far behind the stream time the watermark stays (default 0).
    pub fn out_of_orderness(mut self, d: Duration) -> Self {
        self.out_of_orderness = ms(d);
        self
    }

    /// How long after the watermark passes a window's end it still accepts records
    /// (default 0).
    pub fn allowed_lateness(mut self, d: Duration) -> Self {
        self.lateness = ms(d);
        self
    }

    /// Also emit a window's value after every record, not only its final value when it
    /// closes.
    pub fn emit_updates(mut self) -> Self {
        self.emit_updates = true;
        self
    }

    /// Write late records to `sink`, in the same transaction (declare the topic with
    /// [`Stream::writes_to`](exactly_framework::Stream::writes_to); the
    /// [`StreamExt`](crate::StreamExt) window methods do).
    pub fn late_records_to(mut self, sink: Sink<K, V>) -> Self {
        self.late = Some(Arc::new(sink));
        self
    }

    /// Lets stream time move on by itself while the task's input is idle, so the last
    /// windows close without a later record: after `idle` of wall-clock time without a
    /// record, stream time advances by `idle` at every further `idle` that passes without
    /// one (a wall-clock timer, [`Context::schedule_wall_clock`]), closing what the watermark
    /// then reaches — for sessions, "close a session once its key has been quiet for `gap`
    /// and the input for `idle`". The advance commits with the results it closes, so a
    /// replay decides the same; a record that comes later with an older timestamp is late
    /// for the windows that closed. Default: stream time moves only with records (as in
    /// Kafka Streams).
    ///
    /// # Panics
    /// When `idle` is under a millisecond.
    pub fn close_when_idle(mut self, idle: Duration) -> Self {
        assert!(ms(idle) >= 1, "an idle time must be at least 1 ms");
        self.idle = Some(idle);
        self
    }

    /// The late-records topic, if any.
    pub fn late_topic(&self) -> Option<&str> {
        self.late.as_ref().map(|s| s.topic_name())
    }
}

/// One session of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionState<A> {
    start: i64,
    end: i64,
    acc: A,
}

type Merge<A> = Arc<dyn Fn(A, A) -> A + Send + Sync>;

/// A keyed aggregate per window: `fold(acc, value)` from `init()` for each window a record
/// belongs to; emits `(Windowed<K>, acc)` when the window closes (and after each update
/// with [`Windows::emit_updates`]). State: `windows` (time windows: one accumulator per key
/// and window) or `sessions` (the open sessions of each key), and `stream-time`.
pub struct WindowAggregate<K, V, A, I, F> {
    windows: Windows<K, V, ()>,
    init: Arc<I>,
    fold: Arc<F>,
    store: Store<K, A>,
    time: StreamTime,
    /// Closing time → what may close then (rebuilt from state on assign and after aborts).
    index: BTreeMap<i64, Vec<(Option<K>, i64)>>,
    rebuild: bool,
    late_records: u64,
    /// A record arrived since the last wall-clock tick ([`Windows::close_when_idle`]).
    saw_record: bool,
}

/// Where a window aggregate keeps its windows.
enum Store<K, A> {
    /// Time windows: one accumulator per key and window start (state `windows`).
    Fixed(KeyedState<(Option<K>, i64), A>),
    /// The open sessions of each key (state `sessions`), and how two of them merge.
    Sessions(KeyedState<Option<K>, Vec<SessionState<A>>>, Merge<A>),
}

impl<K, V, A, I, F> WindowAggregate<K, V, A, I, F>
where
    K: Serialize,
    A: Serialize + DeserializeOwned,
{
    /// Time windows (tumbling or hopping), their state opened in `ctx`'s task.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open(
        ctx: &mut Context,
        windows: Windows<K, V, Time>,
        init: Arc<I>,
        fold: Arc<F>,
    ) -> Result<Self> {
        let store = Store::Fixed(ctx.keyed_state(&StateDescriptor::new("windows"))?);
        Self::with_store(ctx, windows, init, fold, store)
    }

    /// Session windows, their state opened in `ctx`'s task: `merge` combines the
    /// accumulators of two sessions a record joins.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open_sessions(
        ctx: &mut Context,
        windows: Windows<K, V, Session>,
        init: Arc<I>,
        fold: Arc<F>,
        merge: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> Result<Self> {
        let state = ctx.keyed_state(&StateDescriptor::new("sessions"))?;
        let store = Store::Sessions(state, Arc::new(merge));
        Self::with_store(ctx, windows, init, fold, store)
    }

    fn with_store<Kind>(
        ctx: &mut Context,
        windows: Windows<K, V, Kind>,
        init: Arc<I>,
        fold: Arc<F>,
        store: Store<K, A>,
    ) -> Result<Self> {
        if let Some(idle) = windows.idle {
            ctx.schedule_wall_clock(idle);
        }
        Ok(WindowAggregate {
            windows: Windows {
                shape: windows.shape,
                out_of_orderness: windows.out_of_orderness,
                lateness: windows.lateness,
                emit_updates: windows.emit_updates,
                late: windows.late,
                idle: windows.idle,
                _kind: PhantomData,
            },
            init,
            fold,
            store,
            time: StreamTime::open(ctx)?,
            index: BTreeMap::new(),
            rebuild: true,
            late_records: 0,
            saw_record: false,
        })
    }

    /// Late records seen by this instance (also counted in the metric
    /// `exactly_window_late_records_total`).
    pub fn late_records(&self) -> u64 {
        self.late_records
    }
}

impl<K, V, A, I, F> WindowAggregate<K, V, A, I, F>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Clone + Send + 'static,
    A: Serialize + DeserializeOwned + Clone + Send + 'static,
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(A, V) -> A + Send + Sync + 'static,
{
    fn lateness(&self) -> i64 {
        self.windows.lateness
    }

    /// Re-reads the committed stream time and re-indexes the open windows.
    fn rebuild_index(&mut self) -> Result<()> {
        self.index.clear();
        self.time.reload()?;
        match (&self.store, self.windows.shape) {
            (Store::Fixed(state), Shape::Fixed { size, .. }) => {
                for ((key, start), _) in state.entries()? {
                    self.index
                        .entry(start.saturating_add(size))
                        .or_default()
                        .push((key, start));
                }
            }
            (Store::Sessions(state, _), Shape::Session { gap }) => {
                for (key, sessions) in state.entries()? {
                    for s in sessions {
                        self.index
                            .entry(s.end.saturating_add(gap))
                            .or_default()
                            .push((key.clone(), s.start));
                    }
                }
            }
            _ => return Err(mismatch()),
        }
        self.rebuild = false;
        Ok(())
    }

    /// Emits and deletes every window whose end + lateness the watermark has reached.
    fn close(
        &mut self,
        watermark: i64,
        origin: &Origin,
        out: &mut dyn Collector<Windowed<K>, A>,
    ) -> Result<()> {
        let lateness = self.lateness();
        while let Some(entry) = self.index.first_entry() {
            let end = *entry.key();
            if end.saturating_add(lateness) > watermark {
                break;
            }
            let due = entry.remove();
            match (&self.store, self.windows.shape) {
                (Store::Fixed(state), _) => {
                    for (key, start) in due {
                        let id = (key, start);
                        if let Some(acc) = state.get(&id)? {
                            state.delete(&id)?;
                            out.collect(result(origin, id.0, start, end, acc))?;
                        }
                    }
                }
                (Store::Sessions(state, _), Shape::Session { gap }) => {
                    for (key, _) in due {
                        let Some(sessions) = state.get(&key)? else {
                            continue;
                        };
                        let (done, open): (Vec<_>, Vec<_>) = sessions.into_iter().partition(|s| {
                            s.end.saturating_add(gap).saturating_add(lateness) <= watermark
                        });
                        if done.is_empty() {
                            continue;
                        }
                        if open.is_empty() {
                            state.delete(&key)?;
                        } else {
                            state.put(&key, &open)?;
                        }
                        for s in done {
                            out.collect(result(origin, key.clone(), s.start, s.end, s.acc))?;
                        }
                    }
                }
                _ => return Err(mismatch()),
            }
        }
        Ok(())
    }

    /// Adds a record to its time windows; false when all of them have closed.
    fn add_fixed(
        &mut self,
        record: &Record<K, V>,
        event: i64,
        watermark: i64,
        out: &mut dyn Collector<Windowed<K>, A>,
    ) -> Result<bool> {
        let (Store::Fixed(state), Shape::Fixed { size, advance }) =
            (&self.store, self.windows.shape)
        else {
            return Err(mismatch());
        };
        let lateness = self.lateness();
        // Every start s, a multiple of `advance`, with s <= event < s + size.
        let last = event.div_euclid(advance).saturating_mul(advance);
        let mut start = last;
        let mut open = false;
        while start > event.saturating_sub(size) {
            let end = start.saturating_add(size);
            if end.saturating_add(lateness) > watermark {
                open = true;
                let id = (record.key.clone(), start);
                let acc = match state.get(&id)? {
                    Some(acc) => acc,
                    None => {
                        self.index
                            .entry(end)
                            .or_default()
                            .push((record.key.clone(), start));
                        (self.init)()
                    }
                };
                let acc = (self.fold)(acc, record.value.clone());
                state.put(&id, &acc)?;
                if self.windows.emit_updates {
                    out.collect(result(&record.origin, record.key.clone(), start, end, acc))?;
                }
            }
            start = start.saturating_sub(advance);
        }
        Ok(open)
    }

    /// Adds a record to its key's sessions, merging those it bridges; false when the
    /// record is late.
    fn add_session(
        &mut self,
        record: &Record<K, V>,
        event: i64,
        watermark: i64,
        out: &mut dyn Collector<Windowed<K>, A>,
    ) -> Result<bool> {
        let (Store::Sessions(state, merge), Shape::Session { gap }) =
            (&self.store, self.windows.shape)
        else {
            return Err(mismatch());
        };
        let lateness = self.lateness();
        let sessions = state.get(&record.key)?.unwrap_or_default();
        let (joined, mut others): (Vec<_>, Vec<_>) = sessions.into_iter().partition(|s| {
            s.start.saturating_sub(gap) <= event && event <= s.end.saturating_add(gap)
        });
        if joined.is_empty() && event.saturating_add(gap).saturating_add(lateness) <= watermark {
            return Ok(false);
        }
        let mut merged = SessionState {
            start: event,
            end: event,
            acc: (self.init)(),
        };
        let mut first = true;
        for s in joined {
            merged.start = merged.start.min(s.start);
            merged.end = merged.end.max(s.end);
            merged.acc = if first {
                s.acc
            } else {
                merge(merged.acc, s.acc)
            };
            first = false;
        }
        merged.acc = (self.fold)(merged.acc, record.value.clone());
        self.index
            .entry(merged.end.saturating_add(gap))
            .or_default()
            .push((record.key.clone(), merged.start));
        let emitted = self.windows.emit_updates.then(|| {
            result(
                &record.origin,
                record.key.clone(),
                merged.start,
                merged.end,
                merged.acc.clone(),
            )
        });
        others.push(merged);
        others.sort_by_key(|s| s.start);
        state.put(&record.key, &others)?;
        if let Some(r) = emitted {
            out.collect(r)?;
        }
        Ok(true)
    }
}

/// The store does not fit the windows' shape (the constructors make that impossible).
fn mismatch() -> Error {
    Error::Operator {
        operator: "window".into(),
        message: "the window store does not match the windows' shape".into(),
    }
}

/// A window result, carrying the triggering record's (or timer's) origin.
fn result<K, A>(
    origin: &Origin,
    key: Option<K>,
    start: i64,
    end: i64,
    acc: A,
) -> Record<Windowed<K>, A> {
    Record {
        key: Some(Windowed { key, start, end }),
        value: acc,
        timestamp: Some(end.saturating_sub(1).max(start)),
        headers: Vec::new(),
        origin: origin.clone(),
    }
}

impl<K, V, A, I, F> Operator<K, V> for WindowAggregate<K, V, A, I, F>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Clone + Send + 'static,
    A: Serialize + DeserializeOwned + Clone + Send + 'static,
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(A, V) -> A + Send + Sync + 'static,
{
    type OutKey = Windowed<K>;
    type OutValue = A;

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut Context,
        out: &mut dyn Collector<Windowed<K>, A>,
    ) -> Result<()> {
        if self.rebuild {
            self.rebuild_index()?;
        }
        let (now, event) = self.time.advance(record.timestamp)?;
        let watermark = now.saturating_sub(self.windows.out_of_orderness);
        self.saw_record = true;
        self.close(watermark, &record.origin, out)?;
        let open = match self.windows.shape {
            Shape::Fixed { .. } => self.add_fixed(&record, event, watermark, out)?,
            Shape::Session { .. } => self.add_session(&record, event, watermark, out)?,
        };
        if !open {
            self.late_records += 1;
            metrics::counter!(exactly_framework::observability::metric::WINDOW_LATE_RECORDS, "operator" => ctx.operator().to_string())
                .increment(1);
            if let Some(late) = self.windows.late.clone() {
                ctx.emit_to(&late, record)?;
            }
        }
        Ok(())
    }

    fn on_abort(&mut self, _: &mut Context) {
        self.rebuild = true;
    }

    /// [`Windows::close_when_idle`]: a tick with no record since the previous one moves
    /// stream time on by the idle time and closes what the watermark reaches.
    fn on_timer(
        &mut self,
        timer: &Timer,
        _: &mut Context,
        out: &mut dyn Collector<Windowed<K>, A>,
    ) -> Result<()> {
        let Some(idle) = self.windows.idle else {
            return Ok(());
        };
        if timer.kind != TimerKind::WallClock || std::mem::take(&mut self.saw_record) {
            return Ok(());
        }
        if self.rebuild {
            self.rebuild_index()?;
        }
        let Some(now) = self.time.current() else {
            return Ok(());
        };
        if self.index.is_empty() {
            // Nothing to close: stream time stays where the records left it.
            return Ok(());
        }
        let (now, _) = self.time.advance(Some(now.saturating_add(ms(idle))))?;
        let watermark = now.saturating_sub(self.windows.out_of_orderness);
        let origin = timer.record(None::<()>, ()).origin;
        self.close(watermark, &origin, out)
    }
}

#[cfg(test)]
mod tests;
