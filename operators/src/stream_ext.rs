//! Chaining methods on [`Stream`] for the operators of this crate, and the two stream-like
//! values some of them return: [`KeyBy`] (a re-keyed stream before its repartition, so that
//! an aggregation right after it can pre-aggregate) and [`Aggregated`] (a keyed aggregation
//! whose emission can still be chosen).

use crate::fold::{Emit, PreAggregate};
use crate::stream_join::{
    JoinKind, JoinWindows, Joiner, KeyedTableJoin, Nullable, Side, StreamJoin, TableJoiner,
};
use crate::window::{Session, Time, WindowAggregate, Windowed, Windows};
use crate::Reduce;
use crate::{
    Aggregate, Branch, Count, Dedup, Filter, FilterMap, FlatMap, Inspect, Map, MapKey, Table,
    TableJoin, WithTimestamp,
};
use exactly_framework::{Codec, Context, Pipeline, Record, Serde, Sink, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// Tags both sides, merges them by key and joins them (see [`StreamExt::join_stream`]).
fn stream_join<K, V, R, O>(
    left: Stream<K, V>,
    name: &str,
    right: Stream<K, R>,
    windows: JoinWindows,
    kind: JoinKind,
    joiner: Arc<Joiner<V, R, O>>,
) -> Stream<K, O>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Clone + Send + 'static,
    O: Send + 'static,
{
    let tag_left = Arc::new(Side::<V, R>::Left);
    let tag_right = Arc::new(Side::<V, R>::Right);
    let l = left.apply(format!("{name}-left"), move || Map(tag_left.clone()));
    let r = right.apply(format!("{name}-right"), move || Map(tag_right.clone()));
    l.merge_by_key(
        name,
        r,
        Serde::bincode::<K>(),
        Serde::bincode::<Side<V, R>>(),
    )
    .apply_with(format!("{name}-join"), move |ctx: &mut Context| {
        StreamJoin::open(ctx, windows, kind, joiner.clone())
    })
}

/// Chaining methods for every operator of this crate on [`Stream`]. Stateless ones name
/// their operator `map-N`, `filter-N`, ... after its position (use [`Stream::apply`] to
/// choose a name); stateful ones take a name, which names their state and changelog.
///
/// ```
/// use exactly_framework::{Pipeline, Record, Serde, Sink};
/// use exactly_operators::{StreamExt, Windows};
/// use std::time::Duration;
///
/// // Sensor readings "sensor-id,celsius": drop malformed ones, alert on extremes, ignore
/// // repeats within a second, then the maximum per sensor and minute.
/// let pipeline = Pipeline::from_topic_with_key("readings", Serde::string(), Serde::string())
///     .filter_map(|line: String| line.split(',').nth(1)?.trim().parse::<f64>().ok())
///     .branch(
///         "extremes",
///         |r: &Record<String, f64>| r.value > 90.0,
///         Sink::topic("alerts", Serde::string(), Serde::json()),
///     )
///     .dedup("repeats", Duration::from_secs(1))
///     .window_aggregate(
///         "max-per-minute",
///         Windows::tumbling(Duration::from_secs(60)).out_of_orderness(Duration::from_secs(5)),
///         || f64::MIN,
///         f64::max,
///     )
///     .to_topic("maxima", Serde::json(), Serde::json());
/// assert_eq!(pipeline.side_topics(), ["alerts"]);
/// ```
pub trait StreamExt<K: Send + 'static, V: Send + 'static>: Sized {
    /// The stream itself: a [`Stream`] as it is; a [`KeyBy`] with its repartition; an
    /// [`Aggregated`] with its aggregation.
    fn into_stream(self) -> Stream<K, V>;

    /// [`Stream::apply`] on [`into_stream`](Self::into_stream).
    fn apply<O, F>(self, name: impl Into<String>, factory: F) -> Stream<O::OutKey, O::OutValue>
    where
        O: exactly_framework::Operator<K, V>,
        F: Fn() -> O + Send + Sync + 'static,
    {
        self.into_stream().apply(name, factory)
    }

    /// [`Stream::apply_with`] on [`into_stream`](Self::into_stream).
    fn apply_with<O, F>(
        self,
        name: impl Into<String>,
        constructor: F,
    ) -> Stream<O::OutKey, O::OutValue>
    where
        O: exactly_framework::Operator<K, V>,
        F: Fn(&mut Context) -> exactly_framework::Result<O> + Send + Sync + 'static,
    {
        self.into_stream().apply_with(name, constructor)
    }

    /// [`Stream::to`] on [`into_stream`](Self::into_stream).
    fn to(self, sink: Sink<K, V>) -> Pipeline {
        self.into_stream().to(sink)
    }

    /// [`Stream::to_topic`] on [`into_stream`](Self::into_stream).
    fn to_topic(
        self,
        topic: impl Into<String>,
        key: impl Codec<K>,
        value: impl Codec<V>,
    ) -> Pipeline {
        self.into_stream().to_topic(topic, key, value)
    }

    /// [`Stream::writes_to`] on [`into_stream`](Self::into_stream).
    fn writes_to(self, topic: impl Into<String>) -> Stream<K, V> {
        self.into_stream().writes_to(topic)
    }

    /// Replaces each value with `f(value)`. See [`Map`].
    fn map<V2, F>(self, f: F) -> Stream<K, V2>
    where
        V2: Send + 'static,
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let name = auto_name(&this, "map");
        let f = Arc::new(f);
        this.apply(name, move || Map(f.clone()))
    }

    /// Keeps the records whose value passes `f`. See [`Filter`].
    fn filter<F>(self, f: F) -> Stream<K, V>
    where
        F: Fn(&V) -> bool + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let name = auto_name(&this, "filter");
        let f = Arc::new(f);
        this.apply(name, move || Filter(f.clone()))
    }

    /// Emits every item of `f(value)`. See [`FlatMap`].
    fn flat_map<I, F>(self, f: F) -> Stream<K, I::Item>
    where
        K: Clone,
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(V) -> I + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let name = auto_name(&this, "flat_map");
        let f = Arc::new(f);
        this.apply(name, move || FlatMap(f.clone()))
    }

    /// Replaces each record's key with `f(&record)`. See [`MapKey`]. Keyed state after it
    /// only sees a key's records together if the input is partitioned by that key: use
    /// [`key_by`](StreamExt::key_by) otherwise.
    fn map_key<K2, F>(self, f: F) -> Stream<K2, V>
    where
        K2: Send + 'static,
        F: Fn(&Record<K, V>) -> Option<K2> + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let name = auto_name(&this, "map_key");
        let f = Arc::new(f);
        this.apply(name, move || MapKey(f.clone()))
    }

    /// Re-keys each record with `f(&value)` and repartitions the stream by the new key
    /// through the internal topic `{application_id}-{name}-repartition`, written in the same
    /// transaction (exactly-once across the hop). `key` and `value` encode the records on
    /// the internal topic.
    fn key_by<K2, F>(
        self,
        name: &str,
        f: F,
        key: impl Codec<K2> + Clone,
        value: impl Codec<V> + Clone,
    ) -> KeyBy<K2, V>
    where
        K2: Send + 'static,
        F: Fn(&V) -> K2 + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let rekeyed = this.apply(format!("{name}-key"), {
            let f = Arc::new(move |r: &Record<K, V>| Some(f(&r.value)));
            move || MapKey(f.clone())
        });
        KeyBy {
            rekeyed,
            name: name.to_string(),
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }

    /// Counts records per key in keyed state named `name`, emitting `(key, count)` once per
    /// key and commit cycle (`.emit_every_update()` for one output per record). Right after
    /// a [`key_by`](StreamExt::key_by), the count is pre-aggregated before the hop. See
    /// [`Count`].
    fn count(self, name: &str) -> Aggregated<K, u64>
    where
        K: Serialize + DeserializeOwned + Clone,
    {
        let this = self.into_stream();
        let name = name.to_string();
        Aggregated::new(move |emit| {
            this.apply_with(name.clone(), move |ctx: &mut Context| {
                Count::open(ctx, emit)
            })
            .serves_state::<Option<K>, u64>(&name, "counts")
        })
    }

    /// Emits `f(value)` when it is `Some`, drops the record otherwise. See [`FilterMap`].
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::StreamExt;
    /// let numbers = Pipeline::from_topic("lines", Serde::string())
    ///     .filter_map(|line: String| line.trim().parse::<i64>().ok()); // drops what does not parse
    /// ```
    fn filter_map<V2, F>(self, f: F) -> Stream<K, V2>
    where
        V2: Send + 'static,
        F: Fn(V) -> Option<V2> + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let name = auto_name(&this, "filter_map");
        let f = Arc::new(f);
        this.apply(name, move || FilterMap(f.clone()))
    }

    /// Calls `f(&record)` for each record and passes it on. See [`Inspect`].
    fn inspect<F>(self, f: F) -> Stream<K, V>
    where
        F: Fn(&Record<K, V>) + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let name = auto_name(&this, "inspect");
        let f = Arc::new(f);
        this.apply(name, move || Inspect(f.clone()))
    }

    /// Stream–stream inner join: each record meets the records of `other` with its key
    /// whose timestamps are at most the window away (either way), and `joiner(left, right)`
    /// is emitted per match, keyed by the key, timestamped with the later of the two. Both
    /// sides are re-partitioned by key through `{application_id}-{name}-merge`, so neither
    /// needs to be partitioned by it already. Operators `{name}-left`, `{name}-right` (the
    /// sides' tags), `{name}` (the hop) and `{name}-join` (states `left`, `right`, timers).
    /// See [`StreamJoin`](crate::stream_join::StreamJoin).
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::stream_join::JoinWindows;
    /// use exactly_operators::StreamExt;
    /// use std::time::Duration;
    ///
    /// // Ad impressions and clicks by ad id: a click within 10 minutes of its impression.
    /// let impressions = Pipeline::from_topic_with_key("impressions", Serde::string(), Serde::string());
    /// let clicks = Pipeline::from_topic_with_key("clicks", Serde::string(), Serde::string());
    /// let pipeline = impressions
    ///     .join_stream("clicked", clicks, JoinWindows::of(Duration::from_secs(600)), |i: &String, c: &String| format!("{i} -> {c}"))
    ///     .to_topic("clicked-impressions", Serde::string(), Serde::string());
    /// # let _ = pipeline;
    /// ```
    fn join_stream<R, O, F>(
        self,
        name: &str,
        other: Stream<K, R>,
        windows: JoinWindows,
        joiner: F,
    ) -> Stream<K, O>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Serialize + DeserializeOwned + Clone,
        R: Serialize + DeserializeOwned + Clone + Send + 'static,
        O: Send + 'static,
        F: Fn(&V, &R) -> O + Send + Sync + 'static,
    {
        let joiner = move |l: Option<&V>, r: Option<&R>| match (l, r) {
            (Some(l), Some(r)) => joiner(l, r),
            _ => panic!("an inner join's joiner is called with both sides"),
        };
        stream_join(
            self.into_stream(),
            name,
            other,
            windows,
            JoinKind::Inner,
            Arc::new(joiner),
        )
    }

    /// Stream–stream left join: as [`join_stream`](Self::join_stream), and each left
    /// record that matched nothing is emitted as `joiner(left, None)` once its window and
    /// grace have passed.
    fn left_join_stream<R, O, F>(
        self,
        name: &str,
        other: Stream<K, R>,
        windows: JoinWindows,
        joiner: F,
    ) -> Stream<K, O>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Serialize + DeserializeOwned + Clone,
        R: Serialize + DeserializeOwned + Clone + Send + 'static,
        O: Send + 'static,
        F: Fn(&V, Option<&R>) -> O + Send + Sync + 'static,
    {
        let joiner = move |l: Option<&V>, r: Option<&R>| match l {
            Some(l) => joiner(l, r),
            None => panic!("a left join's joiner is called with a left value"),
        };
        stream_join(
            self.into_stream(),
            name,
            other,
            windows,
            JoinKind::Left,
            Arc::new(joiner),
        )
    }

    /// Stream–stream outer join: as [`left_join_stream`](Self::left_join_stream), and
    /// unmatched right records too, as `joiner(None, right)`.
    fn outer_join_stream<R, O, F>(
        self,
        name: &str,
        other: Stream<K, R>,
        windows: JoinWindows,
        joiner: F,
    ) -> Stream<K, O>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Serialize + DeserializeOwned + Clone,
        R: Serialize + DeserializeOwned + Clone + Send + 'static,
        O: Send + 'static,
        F: Fn(Option<&V>, Option<&R>) -> O + Send + Sync + 'static,
    {
        stream_join(
            self.into_stream(),
            name,
            other,
            windows,
            JoinKind::Outer,
            Arc::new(joiner),
        )
    }

    /// Co-partitioned table join (Kafka Streams' KStream–KTable join): the topic
    /// `table_topic` (keyed like this stream, `key`/`value` its serdes) is a table, kept per
    /// key in this pipeline's state; each record is joined with its key's row:
    /// `joiner(value, row)` (`None` drops the record: an inner join; always `Some`: a left
    /// join). Table updates and records meet through `{application_id}-{name}-merge`,
    /// partitioned by key; a tombstone deletes a row. A record meets the row as of when it
    /// is processed. See [`KeyedTableJoin`](crate::stream_join::KeyedTableJoin); for a small
    /// table every worker holds whole, see [`join_table`](Self::join_table).
    fn join_table_by_key<T, O, F>(
        self,
        name: &str,
        table_topic: &str,
        key: impl Codec<K> + Clone,
        value: impl Codec<T>,
        joiner: F,
    ) -> Stream<K, O>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Serialize + DeserializeOwned + Clone,
        T: Serialize + DeserializeOwned + Clone + Send + 'static,
        O: Send + 'static,
        F: Fn(V, Option<&T>) -> Option<O> + Send + Sync + 'static,
    {
        let table = Pipeline::from_topic_with_key(
            table_topic.to_string(),
            key,
            Nullable(Arc::new(value) as Arc<dyn Codec<T>>),
        );
        let tag_left = Arc::new(Side::<V, Option<T>>::Left);
        let tag_right = Arc::new(Side::<V, Option<T>>::Right);
        let l = self
            .into_stream()
            .apply(format!("{name}-stream"), move || Map(tag_left.clone()));
        let r = table.apply(format!("{name}-table"), move || Map(tag_right.clone()));
        let joiner: Arc<TableJoiner<V, T, O>> = Arc::new(joiner);
        l.merge_by_key(
            name,
            r,
            Serde::bincode::<K>(),
            Serde::bincode::<Side<V, Option<T>>>(),
        )
        .apply_with(format!("{name}-join"), move |ctx: &mut Context| {
            KeyedTableJoin::open(ctx, joiner.clone())
        })
    }

    /// [`Stream::tee`] on [`into_stream`](Self::into_stream): feeds every record also to
    /// `branch`, a sub-pipeline with a sink of its own, in the same transaction.
    fn tee(self, branch: impl FnOnce(Stream<K, V>) -> Pipeline) -> Stream<K, V>
    where
        K: Clone,
        V: Clone,
    {
        self.into_stream().tee(branch)
    }

    /// Takes each record's event time from its payload: `f(&record)` (ms since the epoch;
    /// `None` keeps the record's timestamp) becomes its timestamp for the windows, timers
    /// and output records after it. See [`WithTimestamp`].
    fn with_timestamp<F>(self, f: F) -> Stream<K, V>
    where
        F: Fn(&Record<K, V>) -> Option<i64> + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let name = auto_name(&this, "with_timestamp");
        let f = Arc::new(f);
        this.apply(name, move || WithTimestamp(f.clone()))
    }

    /// Sends the records matching `predicate` to `sink`'s topic, in the same transaction;
    /// the rest continue. The topic must exist (checked at start). See [`Branch`].
    fn branch<F>(self, name: &str, predicate: F, sink: Sink<K, V>) -> Stream<K, V>
    where
        F: Fn(&Record<K, V>) -> bool + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let (predicate, sink) = (Arc::new(predicate), Arc::new(sink));
        this.writes_to(sink.topic_name())
            .apply(name, move || Branch {
                predicate: predicate.clone(),
                sink: sink.clone(),
            })
    }

    /// Combines each key's values with `f(previous, value)`, emitting the result. State
    /// `reduced`. See [`Reduce`].
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::StreamExt;
    /// // The largest amount per account so far.
    /// let maxima = Pipeline::from_topic_with_key("amounts", Serde::string(), Serde::json::<i64>())
    ///     .reduce("max-amount", |a: i64, b: i64| a.max(b));
    /// ```
    fn reduce<F>(self, name: &str, f: F) -> Aggregated<K, V>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Serialize + DeserializeOwned + Clone,
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let (name, f) = (name.to_string(), Arc::new(f));
        Aggregated::new(move |emit| {
            this.apply_with(name.clone(), move |ctx: &mut Context| {
                Reduce::open(ctx, f.clone(), emit)
            })
            .serves_state::<Option<K>, V>(&name, "reduced")
        })
    }

    /// Folds each key's values into `fold(acc, value)` from `init()`, emitting the
    /// accumulator. State `aggregates`. See [`Aggregate`].
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::StreamExt;
    /// // (count, sum) per account.
    /// let totals = Pipeline::from_topic_with_key("amounts", Serde::string(), Serde::json::<i64>())
    ///     .aggregate("totals", || (0u64, 0i64), |(n, sum), amount: i64| (n + 1, sum + amount));
    /// ```
    fn aggregate<A, I, F>(self, name: &str, init: I, fold: F) -> Aggregated<K, A>
    where
        K: Serialize + DeserializeOwned + Clone,
        A: Serialize + DeserializeOwned + Clone + Send + 'static,
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(A, V) -> A + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let (name, init, fold) = (name.to_string(), Arc::new(init), Arc::new(fold));
        Aggregated::new(move |emit| {
            this.apply_with(name.clone(), move |ctx: &mut Context| {
                Aggregate::open(ctx, init.clone(), fold.clone(), emit)
            })
            .serves_state::<Option<K>, A>(&name, "aggregates")
        })
    }

    /// Drops a record when its key was let through less than `horizon` earlier (stream
    /// time). See [`Dedup`].
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::StreamExt;
    /// // Events keyed by event id: drop re-sends within an hour.
    /// let unique = Pipeline::from_topic_with_key("events", Serde::string(), Serde::bytes())
    ///     .dedup("dedup", std::time::Duration::from_secs(3600));
    /// ```
    fn dedup(self, name: &str, horizon: Duration) -> Stream<K, V>
    where
        K: Serialize + DeserializeOwned,
    {
        let this = self.into_stream();
        let horizon = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
        this.apply_with(name, move |ctx: &mut Context| Dedup::open(ctx, horizon))
    }

    /// Folds each key's values per tumbling or hopping window; emits
    /// `(Windowed<K>, acc)` when a window closes. See [`Windows`] and [`WindowAggregate`].
    fn window_aggregate<A, I, F>(
        self,
        name: &str,
        windows: Windows<K, V, Time>,
        init: I,
        fold: F,
    ) -> Stream<Windowed<K>, A>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Clone,
        A: Serialize + DeserializeOwned + Clone + Send + 'static,
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(A, V) -> A + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let (init, fold) = (Arc::new(init), Arc::new(fold));
        declare_late(this, &windows).apply_with(name, move |ctx: &mut Context| {
            WindowAggregate::open(ctx, windows.clone(), init.clone(), fold.clone())
        })
    }

    /// Counts each key's records per tumbling or hopping window.
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::StreamExt;
    /// use exactly_operators::Windows;
    ///
    /// // Page views per page and minute, final once the minute is 10 s behind the stream.
    /// let per_minute = Pipeline::from_topic_with_key("views", Serde::string(), Serde::string())
    ///     .window_count(
    ///         "views-per-minute",
    ///         Windows::tumbling(std::time::Duration::from_secs(60))
    ///             .out_of_orderness(std::time::Duration::from_secs(10)),
    ///     );
    /// ```
    fn window_count(self, name: &str, windows: Windows<K, V, Time>) -> Stream<Windowed<K>, u64>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Clone,
    {
        let this = self.into_stream();
        this.window_aggregate(name, windows, || 0u64, |n, _| n + 1)
    }

    /// Folds each key's values per session; `merge` combines two sessions' accumulators
    /// when a record bridges them.
    fn session_aggregate<A, I, F, M>(
        self,
        name: &str,
        windows: Windows<K, V, Session>,
        init: I,
        fold: F,
        merge: M,
    ) -> Stream<Windowed<K>, A>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Clone,
        A: Serialize + DeserializeOwned + Clone + Send + 'static,
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(A, V) -> A + Send + Sync + 'static,
        M: Fn(A, A) -> A + Send + Sync + 'static,
    {
        let this = self.into_stream();
        let (init, fold, merge) = (Arc::new(init), Arc::new(fold), Arc::new(merge));
        declare_late(this, &windows).apply_with(name, move |ctx: &mut Context| {
            let merge = merge.clone();
            WindowAggregate::open_sessions(
                ctx,
                windows.clone(),
                init.clone(),
                fold.clone(),
                move |a, b| merge(a, b),
            )
        })
    }

    /// Counts each key's records per session.
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::StreamExt;
    /// use exactly_operators::Windows;
    ///
    /// // Clicks per user session (30 minutes of inactivity end a session).
    /// let sessions = Pipeline::from_topic_with_key("clicks", Serde::string(), Serde::string())
    ///     .session_count("sessions", Windows::session(std::time::Duration::from_secs(1800)));
    /// ```
    fn session_count(self, name: &str, windows: Windows<K, V, Session>) -> Stream<Windowed<K>, u64>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Clone,
    {
        let this = self.into_stream();
        this.session_aggregate(name, windows, || 0u64, |n, _| n + 1, |a, b| a + b)
    }

    /// Joins each record with the row of `table` under the record's key, emitting
    /// `joiner(value, row)` when it is `Some`: an inner join returns `None` for a missing
    /// row, a left join never does. The operator is named `name`. A topic table is a global
    /// table: every worker process materialises all of it, loaded before the first record
    /// is joined and kept up to date in the background. See [`TableJoin`] and
    /// [`join`](crate::join) for its semantics.
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    /// use exactly_operators::{StreamExt, Table};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Customer { name: String, tier: String }
    ///
    /// let pipeline = Pipeline::from_topic_with_key("orders", Serde::string(), Serde::string())
    ///     .join_table(
    ///         "customers",
    ///         Table::topic("customers", Serde::string(), Serde::json::<Customer>()),
    ///         |order: String, customer: Option<&Customer>| {
    ///             // A left join: every order comes out, with its customer's tier if known.
    ///             Some(format!("{order},{}", customer.map_or("unknown", |c| c.tier.as_str())))
    ///         },
    ///     )
    ///     .to_topic("orders-with-tier", Serde::string(), Serde::string());
    /// # let _ = pipeline;
    /// ```
    fn join_table<T, O, F>(self, name: &str, table: Table<K, T>, joiner: F) -> Stream<K, O>
    where
        K: Eq + Hash + Sync,
        T: Send + Sync + 'static,
        O: Send + 'static,
        F: Fn(V, Option<&T>) -> Option<O> + Send + Sync + 'static,
    {
        let mut this = self.into_stream();
        if let Some(topic) = table.topic_name() {
            this = this.reads_from(topic.to_string());
        }
        let joiner = Arc::new(joiner);
        this.apply_with(name, move |ctx: &mut Context| {
            TableJoin::open(ctx, &table, joiner.clone())
        })
    }
}

/// Declares the late-records topic of `windows`, if any.
fn declare_late<K: Send + 'static, V: Send + 'static, Kind>(
    stream: Stream<K, V>,
    windows: &Windows<K, V, Kind>,
) -> Stream<K, V> {
    match windows.late_topic() {
        Some(topic) => stream.writes_to(topic),
        None => stream,
    }
}

fn auto_name<K: Send + 'static, V: Send + 'static>(stream: &Stream<K, V>, kind: &str) -> String {
    format!("{kind}-{}", stream.operator_names().len())
}

impl<K: Send + 'static, V: Send + 'static> StreamExt<K, V> for Stream<K, V> {
    fn into_stream(self) -> Stream<K, V> {
        self
    }
}

/// A stream re-keyed by [`StreamExt::key_by`], before its repartition. Used as a stream
/// (any [`StreamExt`] method, `to_topic`, ...) it is repartitioned through
/// `{application_id}-{name}-repartition` as it is. A `count` or `reduce` right after it
/// **pre-aggregates**: each task folds a key's records within the commit cycle and the hop
/// carries one partial per key and cycle (in the same transaction), which the aggregation
/// after the hop combines — unless the aggregation emits every update.
pub struct KeyBy<K, V> {
    rekeyed: Stream<K, V>,
    name: String,
    key: Arc<dyn Codec<K>>,
    value: Arc<dyn Codec<V>>,
}

impl<K: Send + 'static, V: Send + 'static> StreamExt<K, V> for KeyBy<K, V> {
    fn into_stream(self) -> Stream<K, V> {
        self.rekeyed.repartition(self.name, self.key, self.value)
    }

    fn count(self, name: &str) -> Aggregated<K, u64>
    where
        K: Serialize + DeserializeOwned + Clone,
    {
        let name = name.to_string();
        Aggregated::new(move |emit| match emit {
            Emit::EveryUpdate => self
                .into_stream()
                .apply_with(name.clone(), |ctx: &mut Context| {
                    Count::open(ctx, Emit::EveryUpdate)
                })
                .serves_state::<Option<K>, u64>(&name, "counts"),
            Emit::OnCommit => {
                let partials: Arc<dyn Codec<u64>> = Arc::new(Serde::bincode::<u64>());
                self.rekeyed
                    .apply_with(format!("{}-combine", self.name), |ctx: &mut Context| {
                        Ok(PreAggregate::new(
                            ctx,
                            Arc::new(|n: Option<u64>, _: V| n.unwrap_or(0) + 1),
                        ))
                    })
                    .repartition(self.name, self.key, partials)
                    .apply_with(name.clone(), |ctx: &mut Context| {
                        Count::summing(ctx, Emit::OnCommit)
                    })
                    .serves_state::<Option<K>, u64>(&name, "counts")
            }
        })
    }

    fn reduce<F>(self, name: &str, f: F) -> Aggregated<K, V>
    where
        K: Serialize + DeserializeOwned + Clone,
        V: Serialize + DeserializeOwned + Clone,
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let (name, f) = (name.to_string(), Arc::new(f));
        Aggregated::new(move |emit| {
            let hop = match emit {
                Emit::EveryUpdate => self.into_stream(),
                Emit::OnCommit => {
                    let pre = f.clone();
                    self.rekeyed
                        .apply_with(
                            format!("{}-combine", self.name),
                            move |ctx: &mut Context| {
                                Ok(PreAggregate::new(
                                    ctx,
                                    crate::aggregate::reducing(pre.clone()),
                                ))
                            },
                        )
                        .repartition(self.name, self.key, self.value)
                }
            };
            hop.apply_with(name.clone(), move |ctx: &mut Context| {
                Reduce::open(ctx, f.clone(), emit)
            })
            .serves_state::<Option<K>, V>(&name, "reduced")
        })
    }
}

type Finish<K, A> = Box<dyn FnOnce(Emit) -> Stream<K, A> + Send>;

/// A keyed aggregation (`count`, `reduce`, `aggregate`) whose emission can still be
/// chosen: once per key and commit cycle by default ([`Emit::OnCommit`]), or after every
/// record with [`emit_every_update`](Aggregated::emit_every_update). Used as a stream it is
/// the aggregation's output.
pub struct Aggregated<K, A> {
    finish: Finish<K, A>,
    emit: Emit,
}

impl<K, A> Aggregated<K, A> {
    fn new(finish: impl FnOnce(Emit) -> Stream<K, A> + Send + 'static) -> Self {
        Aggregated {
            finish: Box::new(finish),
            emit: Emit::OnCommit,
        }
    }

    /// One output record per input record (each update of the key), and no
    /// pre-aggregation before a repartition: the behaviour before record caches.
    pub fn emit_every_update(mut self) -> Self {
        self.emit = Emit::EveryUpdate;
        self
    }
}

impl<K: Send + 'static, A: Send + 'static> StreamExt<K, A> for Aggregated<K, A> {
    fn into_stream(self) -> Stream<K, A> {
        (self.finish)(self.emit)
    }
}
