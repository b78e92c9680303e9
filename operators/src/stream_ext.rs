//! Chaining methods on [`Stream`] for the operators of this crate.

use crate::{Count, Filter, FlatMap, Map, MapKey};
use exactly_framework::Stream;
use exactly_framework::{Codec, Record};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Adds `map`, `filter` and `flat_map` to [`Stream`]. Each call names its operator
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
