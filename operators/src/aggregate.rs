//! `reduce` and `aggregate`: keyed folds kept in keyed state, emitting each key's updated
//! value after every record.

use exactly_framework::{
    Collector, Context, KeyedState, Operator, Record, Result, StateDescriptor,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Folds each key's values into an accumulator: `fold(acc, value)`, starting from
/// `init()`, and emits `(key, accumulator)` after each record. State: one `A` per key in
/// the state `aggregates` (changelogged, restored like every keyed state).
pub struct Aggregate<K, A, I, F> {
    /// The accumulator of a key's first record.
    pub init: Arc<I>,
    /// Adds one value to an accumulator.
    pub fold: Arc<F>,
    state: KeyedState<Option<K>, A>,
}

impl<K: Serialize, A: Serialize + DeserializeOwned, I, F> Aggregate<K, A, I, F> {
    /// An aggregation with this initial accumulator and fold, its state opened in `ctx`'s
    /// task.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open(ctx: &mut Context, init: Arc<I>, fold: Arc<F>) -> Result<Self> {
        Ok(Aggregate {
            init,
            fold,
            state: ctx.keyed_state(&StateDescriptor::new("aggregates"))?,
        })
    }
}

impl<K, V, A, I, F> Operator<K, V> for Aggregate<K, A, I, F>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    A: Serialize + DeserializeOwned + Clone + Send + 'static,
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(A, V) -> A + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = A;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, A>,
    ) -> Result<()> {
        let state = &self.state;
        let acc = state.get(&record.key)?.unwrap_or_else(|| (self.init)());
        let (record, value) = take_value(record);
        let acc = (self.fold)(acc, value);
        state.put(&record.key, &acc)?;
        out.collect(record.with_value(acc))
    }
}

/// Splits a record into its envelope and its value.
fn take_value<K, V>(record: Record<K, V>) -> (Record<K, ()>, V) {
    let Record {
        key,
        value,
        timestamp,
        headers,
        origin,
    } = record;
    (
        Record {
            key,
            value: (),
            timestamp,
            headers,
            origin,
        },
        value,
    )
}

/// Combines each key's values pairwise: the first value of a key is emitted as is, every
/// later one as `reduce(previous, value)`. State: one `V` per key in the state `reduced`.
pub struct Reduce<K, V, F> {
    /// Combines the key's current value with a new one.
    pub reduce: Arc<F>,
    state: KeyedState<Option<K>, V>,
}

impl<K: Serialize, V: Serialize + DeserializeOwned, F> Reduce<K, V, F> {
    /// A reduction with this combining function, its state opened in `ctx`'s task.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open(ctx: &mut Context, reduce: Arc<F>) -> Result<Self> {
        Ok(Reduce {
            reduce,
            state: ctx.keyed_state(&StateDescriptor::new("reduced"))?,
        })
    }
}

impl<K, V, F> Operator<K, V> for Reduce<K, V, F>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
    F: Fn(V, V) -> V + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = V;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, V>,
    ) -> Result<()> {
        let state = &self.state;
        let (record, value) = take_value(record);
        let value = match state.get(&record.key)? {
            Some(previous) => (self.reduce)(previous, value),
            None => value,
        };
        state.put(&record.key, &value)?;
        out.collect(record.with_value(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn aggregate_folds_per_key_and_forgets_aborted_cycles() {
        let mut h: Harness<String, u32, _> = Harness::build(|ctx| {
            Aggregate::open(
                ctx,
                Arc::new(Vec::<u32>::new),
                Arc::new(|mut acc: Vec<u32>, v: u32| {
                    acc.push(v);
                    acc
                }),
            )
        })
        .unwrap();
        h.push(Some("a".into()), 1).unwrap();
        h.push(Some("b".into()), 2).unwrap();
        h.push(Some("a".into()), 3).unwrap();
        h.barrier().unwrap();
        h.push(Some("a".into()), 99).unwrap();
        h.abort();
        h.push(Some("a".into()), 4).unwrap();
        assert_eq!(
            h.values(),
            vec![vec![1], vec![2], vec![1, 3], vec![1, 3, 99], vec![1, 3, 4]]
        );
    }

    #[test]
    fn reduce_keeps_the_maximum_per_key() {
        let mut h: Harness<String, i64, _> =
            Harness::build(|ctx| Reduce::open(ctx, Arc::new(|a: i64, b: i64| a.max(b)))).unwrap();
        for (k, v) in [("x", 3), ("y", 1), ("x", 2), ("x", 7), ("y", 0)] {
            h.push(Some(k.to_string()), v).unwrap();
        }
        assert_eq!(h.values(), vec![3, 1, 3, 7, 1]);
    }
}
