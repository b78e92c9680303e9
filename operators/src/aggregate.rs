//! `reduce` and `aggregate`: keyed folds kept in keyed state, emitting each key's updated
//! value once per commit cycle (or after every record, with [`Emit::EveryUpdate`]).

use crate::fold::{Emit, FoldFn, KeyedFold};
use exactly_framework::{Collector, Context, Operator, Record, Result, StateDescriptor};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Folds each key's values into an accumulator: `fold(acc, value)`, starting from
/// `init()`, and emits `(key, accumulator)` as [`Emit`] says. State: one `A` per key in the
/// state `aggregates` (changelogged, restored like every keyed state).
pub struct Aggregate<K, V, A> {
    fold: KeyedFold<K, V, A>,
}

impl<K, V, A> Aggregate<K, V, A>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: 'static,
    A: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    /// An aggregation with this initial accumulator and fold, its state opened in `ctx`'s
    /// task.
    ///
    /// # Errors
    /// As [`Context::queryable_state`].
    pub fn open<I, F>(ctx: &mut Context, init: Arc<I>, fold: Arc<F>, emit: Emit) -> Result<Self>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(A, V) -> A + Send + Sync + 'static,
    {
        let fold: FoldFn<V, A> =
            Arc::new(move |acc: Option<A>, v: V| fold(acc.unwrap_or_else(|| init()), v));
        let state = ctx.queryable_state(&StateDescriptor::new("aggregates"))?;
        Ok(Aggregate {
            fold: KeyedFold::new(ctx, state, fold, emit),
        })
    }
}

impl<K, V, A> Operator<K, V> for Aggregate<K, V, A>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Send + 'static,
    A: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    type OutKey = K;
    type OutValue = A;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, A>,
    ) -> Result<()> {
        self.fold.process(record, out)
    }

    fn on_barrier(&mut self, _: &mut Context, out: &mut dyn Collector<K, A>) -> Result<()> {
        self.fold.flush(out)
    }

    fn on_abort(&mut self, _: &mut Context) {
        self.fold.abort();
    }
}

/// Combines each key's values pairwise: the first value of a key is kept as is, every
/// later one as `reduce(previous, value)`; emits as [`Emit`] says. State: one `V` per key
/// in the state `reduced`.
pub struct Reduce<K, V> {
    fold: KeyedFold<K, V, V>,
}

impl<K, V> Reduce<K, V>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    /// A reduction with this combining function, its state opened in `ctx`'s task.
    ///
    /// # Errors
    /// As [`Context::queryable_state`].
    pub fn open<F>(ctx: &mut Context, reduce: Arc<F>, emit: Emit) -> Result<Self>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let state = ctx.queryable_state(&StateDescriptor::new("reduced"))?;
        Ok(Reduce {
            fold: KeyedFold::new(ctx, state, reducing(reduce), emit),
        })
    }
}

/// `reduce` as a fold: a key's first value is its accumulator.
pub(crate) fn reducing<V: 'static, F>(reduce: Arc<F>) -> FoldFn<V, V>
where
    F: Fn(V, V) -> V + Send + Sync + 'static,
{
    Arc::new(move |acc: Option<V>, v: V| match acc {
        Some(a) => reduce(a, v),
        None => v,
    })
}

impl<K, V> Operator<K, V> for Reduce<K, V>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    type OutKey = K;
    type OutValue = V;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, V>,
    ) -> Result<()> {
        self.fold.process(record, out)
    }

    fn on_barrier(&mut self, _: &mut Context, out: &mut dyn Collector<K, V>) -> Result<()> {
        self.fold.flush(out)
    }

    fn on_abort(&mut self, _: &mut Context) {
        self.fold.abort();
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
                Emit::EveryUpdate,
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
        let mut h: Harness<String, i64, _> = Harness::build(|ctx| {
            Reduce::open(ctx, Arc::new(|a: i64, b: i64| a.max(b)), Emit::EveryUpdate)
        })
        .unwrap();
        for (k, v) in [("x", 3), ("y", 1), ("x", 2), ("x", 7), ("y", 0)] {
            h.push(Some(k.to_string()), v).unwrap();
        }
        assert_eq!(h.values(), vec![3, 1, 3, 7, 1]);
    }
}
