//! Chaining methods on [`Stream`] for the operators of this crate.

use crate::{Count, Filter, FlatMap, Map, MapKey, Table, TableJoin};
use exactly_framework::Stream;
use exactly_framework::{Codec, Record};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::sync::Arc;

/// Adds `map`, `filter`, `flat_map`, ..., `join_table` to [`Stream`]. Each call names its operator
/// `map-N`, `filter-N`, ... after its position; use [`Stream::apply`] to choose a name.
pub trait StreamExt<K, V>: Sized {
    /// Replaces each value with `f(value)`. See [`Map`].
    fn map<V2, F>(self, f: F) -> Stream<K, V2>
    where
        V2: Send + 'static,
        F: Fn(V) -> V2 + Send + Sync + 'static;

    /// Keeps the records whose value passes `f`. See [`Filter`].
    fn filter<F>(self, f: F) -> Stream<K, V>
    where
        F: Fn(&V) -> bool + Send + Sync + 'static;

    /// Emits every item of `f(value)`. See [`FlatMap`].
    fn flat_map<I, F>(self, f: F) -> Stream<K, I::Item>
    where
        K: Clone,
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(V) -> I + Send + Sync + 'static;

    /// Replaces each record's key with `f(&record)`. See [`MapKey`]. Keyed state after it
    /// only sees a key's records together if the input is partitioned by that key: use
    /// [`key_by`](StreamExt::key_by) otherwise.
    fn map_key<K2, F>(self, f: F) -> Stream<K2, V>
    where
        K2: Send + 'static,
        F: Fn(&Record<K, V>) -> Option<K2> + Send + Sync + 'static;

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
    ) -> Stream<K2, V>
    where
        K2: Send + 'static,
        F: Fn(&V) -> K2 + Send + Sync + 'static;

    /// Counts records per key in keyed state named `name`, emitting `(key, count)`. See
    /// [`Count`].
    fn count(self, name: &str) -> Stream<K, u64>
    where
        K: Serialize + DeserializeOwned + Clone;

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
        F: Fn(V, Option<&T>) -> Option<O> + Send + Sync + 'static;
}

fn auto_name<K: Send + 'static, V: Send + 'static>(stream: &Stream<K, V>, kind: &str) -> String {
    format!("{kind}-{}", stream.operator_names().len())
}

impl<K: Send + 'static, V: Send + 'static> StreamExt<K, V> for Stream<K, V> {
    fn map<V2, F>(self, f: F) -> Stream<K, V2>
    where
        V2: Send + 'static,
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        let name = auto_name(&self, "map");
        let f = Arc::new(f);
        self.apply(name, move || Map(f.clone()))
    }

    fn filter<F>(self, f: F) -> Stream<K, V>
    where
        F: Fn(&V) -> bool + Send + Sync + 'static,
    {
        let name = auto_name(&self, "filter");
        let f = Arc::new(f);
        self.apply(name, move || Filter(f.clone()))
    }

    fn flat_map<I, F>(self, f: F) -> Stream<K, I::Item>
    where
        K: Clone,
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(V) -> I + Send + Sync + 'static,
    {
        let name = auto_name(&self, "flat_map");
        let f = Arc::new(f);
        self.apply(name, move || FlatMap(f.clone()))
    }

    fn count(self, name: &str) -> Stream<K, u64>
    where
        K: Serialize + DeserializeOwned + Clone,
    {
        self.apply(name, Count::default)
    }

    fn join_table<T, O, F>(self, name: &str, table: Table<K, T>, joiner: F) -> Stream<K, O>
    where
        K: Eq + Hash + Sync,
        T: Send + Sync + 'static,
        O: Send + 'static,
        F: Fn(V, Option<&T>) -> Option<O> + Send + Sync + 'static,
    {
        let joiner = Arc::new(joiner);
        self.apply(name, move || TableJoin::new(table.clone(), joiner.clone()))
    }

    fn map_key<K2, F>(self, f: F) -> Stream<K2, V>
    where
        K2: Send + 'static,
        F: Fn(&Record<K, V>) -> Option<K2> + Send + Sync + 'static,
    {
        let name = auto_name(&self, "map_key");
        let f = Arc::new(f);
        self.apply(name, move || MapKey(f.clone()))
    }

    fn key_by<K2, F>(
        self,
        name: &str,
        f: F,
        key: impl Codec<K2> + Clone,
        value: impl Codec<V> + Clone,
    ) -> Stream<K2, V>
    where
        K2: Send + 'static,
        F: Fn(&V) -> K2 + Send + Sync + 'static,
    {
        self.apply(format!("{name}-key"), {
            let f = Arc::new(move |r: &Record<K, V>| Some(f(&r.value)));
            move || MapKey(f.clone())
        })
        .repartition(name, key, value)
    }
}
