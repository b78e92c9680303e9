//! `count`: how many records each key has had, kept in keyed state.

use crate::fold::{Emit, KeyedFold};
use exactly_framework::{Collector, Context, Operator, Record, Result, StateDescriptor};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Counts records per key and emits `(key, count so far)`: once per key and commit cycle
/// by default ([`Emit::OnCommit`]), or after each record ([`Emit::EveryUpdate`]). Records
/// without a key are counted under no key and emitted with `None`. State: one `u64` per key
/// in the state `counts`, changelogged and restored like every keyed state.
pub struct Count<K, V> {
    fold: KeyedFold<K, V, u64>,
}

impl<K, V> Count<K, V>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: 'static,
{
    /// Opens the count's state in `ctx`'s task (see
    /// [`Stream::apply_with`](exactly_framework::Stream::apply_with)); each record counts
    /// as 1.
    ///
    /// # Errors
    /// As [`Context::queryable_state`].
    pub fn open(ctx: &mut Context, emit: Emit) -> Result<Self> {
        let one = Arc::new(|n: Option<u64>, _: V| n.unwrap_or(0) + 1);
        Self::with_fold(ctx, emit, one)
    }

    fn with_fold(ctx: &mut Context, emit: Emit, fold: crate::fold::FoldFn<V, u64>) -> Result<Self> {
        let state = ctx.queryable_state(&StateDescriptor::new("counts"))?;
        Ok(Count {
            fold: KeyedFold::new(ctx, state, fold, emit),
        })
    }
}

impl<K> Count<K, u64>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    /// A count whose input records carry partial counts to add (what the hop after a
    /// pre-aggregating `key_by` carries).
    pub(crate) fn summing(ctx: &mut Context, emit: Emit) -> Result<Self> {
        let add = Arc::new(|n: Option<u64>, partial: u64| n.unwrap_or(0) + partial);
        Self::with_fold(ctx, emit, add)
    }
}

impl<K, V> Operator<K, V> for Count<K, V>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Send + 'static,
{
    type OutKey = K;
    type OutValue = u64;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, u64>,
    ) -> Result<()> {
        self.fold.process(record, out)
    }

    fn on_barrier(&mut self, _: &mut Context, out: &mut dyn Collector<K, u64>) -> Result<()> {
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
    fn counts_per_key_and_forgets_aborted_cycles() {
        let mut h: Harness<String, (), Count<String, ()>> =
            Harness::build(|ctx| Count::open(ctx, Emit::EveryUpdate)).unwrap();
        h.push(Some("a".into()), ()).unwrap();
        h.push(Some("b".into()), ()).unwrap();
        h.push(Some("a".into()), ()).unwrap();
        h.barrier().unwrap();
        assert_eq!(h.values(), vec![1, 1, 2]);
        h.take_output();
        h.push(Some("a".into()), ()).unwrap(); // 3, then aborted
        h.abort();
        h.push(Some("a".into()), ()).unwrap();
        assert_eq!(
            h.values(),
            vec![3, 3],
            "the aborted increment must not survive"
        );
    }

    #[test]
    fn on_commit_a_key_is_emitted_once_per_cycle_with_its_last_count() {
        let mut h: Harness<String, (), Count<String, ()>> =
            Harness::build(|ctx| Count::open(ctx, Emit::OnCommit)).unwrap();
        for k in ["a", "b", "a", "a"] {
            h.push(Some(k.into()), ()).unwrap();
        }
        assert!(h.values().is_empty(), "nothing before the barrier");
        h.barrier().unwrap();
        let mut first: Vec<(String, u64)> = h
            .take_output()
            .into_iter()
            .map(|r| (r.key.unwrap(), r.value))
            .collect();
        first.sort();
        assert_eq!(first, [("a".into(), 3), ("b".into(), 1)]);
        // An aborted cycle emits nothing and leaves the count as committed.
        h.push(Some("a".into()), ()).unwrap();
        h.abort();
        h.push(Some("a".into()), ()).unwrap();
        h.push(Some("a".into()), ()).unwrap();
        h.barrier().unwrap();
        assert_eq!(h.values(), vec![5]);
    }
}
