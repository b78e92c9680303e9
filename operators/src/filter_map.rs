//! `filter_map`: transform each value and drop the records that map to `None`.

use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::sync::Arc;

/// Emits `f(value)` when it is `Some`, with the record's key, timestamp and headers;
/// drops the record when it is `None`.
pub struct FilterMap<F>(pub Arc<F>);

impl<K, V, V2, F> Operator<K, V> for FilterMap<F>
where
    K: Send + 'static,
    V2: Send + 'static,
    F: Fn(V) -> Option<V2> + Send + Sync + 'static,
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
        match (self.0)(value) {
            Some(value) => out.collect(Record {
                key,
                value,
                timestamp,
                headers,
                origin,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn maps_and_drops_nones() {
        let mut h = Harness::new(FilterMap(Arc::new(|v: String| v.parse::<i64>().ok())));
        for v in ["1", "x", "3", ""] {
            h.push(None::<()>, v.to_string()).unwrap();
        }
        assert_eq!(h.values(), vec![1, 3]);
    }
}
