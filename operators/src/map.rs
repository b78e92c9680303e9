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
