//! `map`: one value in, one value out.

use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::sync::Arc;

/// Replaces each record's value with `f(value)`; key, timestamp and headers are kept.
pub struct Map<F>(pub Arc<F>);

impl<K, V, V2, F> Operator<K, V> for Map<F>
where
    K: Send + 'static,
    V2: Send + 'static,
    F: Fn(V) -> V2 + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = V2;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, V2>,
    ) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
            origin,
        } = record;
        out.collect(Record {
            key,
            value: (self.0)(value),
            timestamp,
            headers,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn maps_values_and_keeps_keys() {
        let mut h = Harness::new(Map(Arc::new(|v: i32| v * 10)));
        h.push(Some("k"), 1).unwrap();
        h.push(None, 2).unwrap();
        let out = h.take_output();
        assert_eq!(
            out.iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(out[0].key, Some("k"));
        assert_eq!(out[1].origin.offset, 1);
    }
}
