//! Stream–stream windowed joins: inner, left and outer.
//!
//! Both sides meet by key in one task: [`StreamExt::join_stream`](crate::StreamExt::join_stream)
//! and its left/outer variants route each side's records, tagged [`Side`], through one
//! internal topic partitioned by the join key ([`Stream::merge_by_key`]) — so neither side
//! needs to be partitioned by that key already. [`StreamJoin`] then buffers each side per key
//! in keyed state. A record joins every record of the other side of its key whose timestamp
//! is at most `window` away (results carry the later timestamp). A buffered record expires
//! once stream time passes its timestamp + window + grace (an event-time timer): then a left
//! (left and outer joins) or right (outer joins) record that never matched is emitted with
//! `None` for the other side. A record that arrives already expired is dropped.
//!
//! [`Stream::merge_by_key`]: exactly_framework::Stream::merge_by_key

use exactly_framework::{
    Collector, Context, KeyedState, Operator, Record, Result, StateDescriptor, Timer,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A record of the left or the right stream of a join, on the way to the join's task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Side<L, R> {
    /// From the left stream.
    Left(L),
    /// From the right stream.
    Right(R),
}

/// Which unmatched records a join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matches only.
    Inner,
    /// Matches, and left records that never matched.
    Left,
    /// Matches, and records of either side that never matched.
    Outer,
}

/// How far apart two records may be to join, and how long a buffered record waits for
/// out-of-order ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    window: i64,
    grace: i64,
}

impl JoinWindows {
    /// Records at most `window` apart (either way) join; no grace.
    pub fn of(window: Duration) -> Self {
        JoinWindows {
            window: ms(window),
            grace: 0,
        }
    }

    /// Keeps buffered records `grace` longer, for records of the other side that arrive
    /// out of order (and delays unmatched results as long).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = ms(grace);
        self
    }

    /// When a record at `ts` expires: once stream time passes this.
    fn expiry(&self, ts: i64) -> i64 {
        ts.saturating_add(self.window).saturating_add(self.grace)
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A buffered record of one side.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Buffered<V> {
    ts: i64,
    value: V,
    matched: bool,
}

/// The joiner: the left and right values (either `None` for an unmatched record).
pub type Joiner<L, R, O> = dyn Fn(Option<&L>, Option<&R>) -> O + Send + Sync;

/// A table joiner: the record's value and its key's row, if any; `None` drops the record.
pub type TableJoiner<V, T, O> = dyn Fn(V, Option<&T>) -> Option<O> + Send + Sync;

/// Joins the two sides of a merged stream. States `left` and `right` (each side's buffered
/// records per key), and the event-time timers that expire them. See the [module docs](self).
pub struct StreamJoin<K, L, R, O> {
    windows: JoinWindows,
    kind: JoinKind,
    joiner: Arc<Joiner<L, R, O>>,
    left: KeyedState<Option<K>, Vec<Buffered<L>>>,
    right: KeyedState<Option<K>, Vec<Buffered<R>>>,
}

impl<K, L, R, O> StreamJoin<K, L, R, O>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    L: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Clone + Send + 'static,
    O: Send + 'static,
{
    /// Opens the join's state and timers in `ctx`'s task.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open(
        ctx: &mut Context,
        windows: JoinWindows,
        kind: JoinKind,
        joiner: Arc<Joiner<L, R, O>>,
    ) -> Result<Self> {
        ctx.enable_timers()?;
        Ok(StreamJoin {
            windows,
            kind,
            joiner,
            left: ctx.keyed_state(&StateDescriptor::new("left"))?,
            right: ctx.keyed_state(&StateDescriptor::new("right"))?,
        })
    }
}

/// Adds `value` at `ts` to `mine` after joining it with `theirs`: emits one result per
/// match (through `emit(mine, theirs, ts)`) and marks the matched records.
fn probe<K, M, T, O>(
    mine: &KeyedState<Option<K>, Vec<Buffered<M>>>,
    theirs: &KeyedState<Option<K>, Vec<Buffered<T>>>,
    key: &Option<K>,
    ts: i64,
    value: M,
    window: i64,
    mut emit: impl FnMut(&M, &T, i64) -> Result<O>,
) -> Result<Vec<O>>
where
    K: Serialize,
    M: Serialize + DeserializeOwned,
    T: Serialize + DeserializeOwned,
{
    let mut out = Vec::new();
    let mut matched = false;
    if let Some(mut other) = theirs.get(key)? {
        let mut changed = false;
        for b in &mut other {
            if (b.ts - ts).abs() <= window {
                out.push(emit(&value, &b.value, b.ts.max(ts))?);
                matched = true;
                changed |= !std::mem::replace(&mut b.matched, true);
            }
        }
        if changed {
            theirs.put(key, &other)?;
        }
    }
    let mut buffered = mine.get(key)?.unwrap_or_default();
    buffered.push(Buffered { ts, value, matched });
    mine.put(key, &buffered)?;
    Ok(out)
}

/// Removes `key`'s records of one side that expired by `now`; returns the unmatched ones.
fn expire<K, V>(
    state: &KeyedState<Option<K>, Vec<Buffered<V>>>,
    key: &Option<K>,
    now: i64,
    windows: &JoinWindows,
) -> Result<Vec<Buffered<V>>>
where
    K: Serialize,
    V: Serialize + DeserializeOwned,
{
    let Some(all) = state.get(key)? else {
        return Ok(Vec::new());
    };
    let (gone, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|b| windows.expiry(b.ts) < now);
    if gone.is_empty() {
        return Ok(gone);
    }
    if kept.is_empty() {
        state.delete(key)?;
    } else {
        state.put(key, &kept)?;
    }
    Ok(gone.into_iter().filter(|b| !b.matched).collect())
}

impl<K, L, R, O> Operator<K, Side<L, R>> for StreamJoin<K, L, R, O>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    L: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Clone + Send + 'static,
    O: Send + 'static,
{
    type OutKey = K;
    type OutValue = O;

    fn process(
        &mut self,
        r: Record<K, Side<L, R>>,
        ctx: &mut Context,
        out: &mut dyn Collector<K, O>,
    ) -> Result<()> {
        let ts = r.timestamp.or(ctx.stream_time()).unwrap_or(0);
        if ctx
            .stream_time()
            .is_some_and(|now| self.windows.expiry(ts) < now)
        {
            return Ok(()); // Too late to join anything: dropped.
        }
        let w = self.windows.window;
        let joiner = self.joiner.clone();
        let key = r.key.clone();
        let results = match r.value {
            Side::Left(l) => probe(&self.left, &self.right, &key, ts, l, w, |l, rv, t| {
                Ok((joiner(Some(l), Some(rv)), t))
            })?,
            Side::Right(rv) => probe(&self.right, &self.left, &key, ts, rv, w, |rv, l, t| {
                Ok((joiner(Some(l), Some(rv)), t))
            })?,
        };
        // One timer per key and expiry time: the buffered records expire then.
        ctx.schedule_event_time(&key, self.windows.expiry(ts).saturating_add(1))?;
        for (value, t) in results {
            out.collect(Record {
                key: key.clone(),
                value,
                timestamp: Some(t),
                headers: r.headers.clone(),
                origin: r.origin.clone(),
            })?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut Context,
        out: &mut dyn Collector<K, O>,
    ) -> Result<()> {
        let Some(key) = timer.key::<Option<K>>()? else {
            return Ok(());
        };
        let now = ctx.stream_time().unwrap_or(timer.time);
        let lefts = expire(&self.left, &key, now, &self.windows)?;
        let rights = expire(&self.right, &key, now, &self.windows)?;
        if self.kind != JoinKind::Inner {
            for b in lefts {
                let mut rec = timer.record(key.clone(), (self.joiner)(Some(&b.value), None));
                rec.timestamp = Some(b.ts);
                out.collect(rec)?;
            }
        }
        if self.kind == JoinKind::Outer {
            for b in rights {
                let mut rec = timer.record(key.clone(), (self.joiner)(None, Some(&b.value)));
                rec.timestamp = Some(b.ts);
                out.collect(rec)?;
            }
        }
        Ok(())
    }
}

/// A co-partitioned table join (Kafka Streams' KStream–KTable join): the table's updates and
/// the stream's records meet by key in one task (through [`Stream::merge_by_key`]), the
/// table kept per key in keyed state `table` (a `None` update, a tombstone, deletes the
/// row). Each stream record is joined with the row its key has when the record is processed:
/// `joiner(value, row)`, or nothing when it returns `None`. Chain it with
/// [`StreamExt::join_table_by_key`](crate::StreamExt::join_table_by_key).
///
/// [`Stream::merge_by_key`]: exactly_framework::Stream::merge_by_key
pub struct KeyedTableJoin<K, V, T, O> {
    joiner: Arc<TableJoiner<V, T, O>>,
    table: KeyedState<Option<K>, T>,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<K, V, T, O> KeyedTableJoin<K, V, T, O>
where
    K: Serialize,
    T: Serialize + DeserializeOwned,
{
    /// Opens the table's state in `ctx`'s task.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open(ctx: &mut Context, joiner: Arc<TableJoiner<V, T, O>>) -> Result<Self> {
        Ok(KeyedTableJoin {
            joiner,
            table: ctx.keyed_state(&StateDescriptor::new("table"))?,
            _v: std::marker::PhantomData,
        })
    }
}

impl<K, V, T, O> Operator<K, Side<V, Option<T>>> for KeyedTableJoin<K, V, T, O>
where
    K: Serialize + Send + 'static,
    V: Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    O: Send + 'static,
{
    type OutKey = K;
    type OutValue = O;

    fn process(
        &mut self,
        r: Record<K, Side<V, Option<T>>>,
        _: &mut Context,
        out: &mut dyn Collector<K, O>,
    ) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
            origin,
        } = r;
        match value {
            Side::Right(Some(row)) => self.table.put(&key, &row),
            Side::Right(None) => self.table.delete(&key),
            Side::Left(v) => {
                let row = self.table.get(&key)?;
                match (self.joiner)(v, row.as_ref()) {
                    Some(value) => out.collect(Record {
                        key,
                        value,
                        timestamp,
                        headers,
                        origin,
                    }),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A value codec that reads a null (a tombstone) as `None`: a table topic's values.
pub(crate) struct Nullable<T>(pub(crate) Arc<dyn exactly_framework::Codec<T>>);

impl<T: 'static> exactly_framework::Codec<Option<T>> for Nullable<T> {
    fn encode<'a>(
        &self,
        value: &'a Option<T>,
    ) -> std::result::Result<Option<std::borrow::Cow<'a, [u8]>>, String> {
        match value {
            Some(v) => self.0.encode(v),
            None => Ok(None),
        }
    }
    fn decode(&self, bytes: Option<&[u8]>) -> std::result::Result<Option<T>, String> {
        bytes.map(|b| self.0.decode(Some(b))).transpose()
    }
}

#[cfg(test)]
mod tests;
