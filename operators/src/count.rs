//! `count`: how many records each key has had, kept in keyed state.

use exactly_framework::{
    Collector, Context, KeyedState, Operator, Record, Result, StateDescriptor,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;

/// Counts records per key and emits `(key, count so far)` after each record. Records
/// without a key are counted under no key and emitted with `None`. State: one `u64` per
/// key in the state `counts`, changelogged and restored like every keyed state.
pub struct Count<K> {
    state: Option<KeyedState<Option<K>, u64>>,
    _k: PhantomData<fn() -> K>,
}

impl<K> Default for Count<K> {
    fn default() -> Self {
        Count {
            state: None,
            _k: PhantomData,
        }
    }
}

impl<K, V> Operator<K, V> for Count<K>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    type OutKey = K;
    type OutValue = u64;

    fn on_assign(&mut self, ctx: &mut Context) -> Result<()> {
        self.state = Some(ctx.keyed_state(&StateDescriptor::new("counts"))?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, u64>,
    ) -> Result<()> {
        let Some(state) = &self.state else {
            return Err(exactly_framework::Error::Operator {
                operator: "count".into(),
                message: "process called before on_assign".into(),
            });
        };
        let n = state.get(&record.key)?.unwrap_or(0) + 1;
        state.put(&record.key, &n)?;
        out.collect(record.with_value(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn counts_per_key_and_forgets_aborted_cycles() {
        let mut h: Harness<String, (), Count<String>> = Harness::new(Count::default());
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
}
