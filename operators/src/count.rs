//! `count`: how many records each key has had, kept in keyed state.

use exactly_framework::{
    Collector, Context, KeyedState, Operator, Record, Result, StateDescriptor,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Counts records per key and emits `(key, count so far)` after each record. Records
/// without a key are counted under no key and emitted with `None`. State: one `u64` per
/// key in the state `counts`, changelogged and restored like every keyed state.
pub struct Count<K> {
    state: KeyedState<Option<K>, u64>,
}

impl<K: Serialize + DeserializeOwned> Count<K> {
    /// Opens the count's state in `ctx`'s task (see
    /// [`Stream::apply_with`](exactly_framework::Stream::apply_with)).
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open(ctx: &mut Context) -> Result<Self> {
        Ok(Count {
            state: ctx.keyed_state(&StateDescriptor::new("counts"))?,
        })
    }
}

impl<K, V> Operator<K, V> for Count<K>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    type OutKey = K;
    type OutValue = u64;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, u64>,
    ) -> Result<()> {
        let n = self.state.get(&record.key)?.unwrap_or(0) + 1;
        self.state.put(&record.key, &n)?;
        out.collect(record.with_value(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn counts_per_key_and_forgets_aborted_cycles() {
        let mut h: Harness<String, (), Count<String>> = Harness::build(Count::open).unwrap();
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
