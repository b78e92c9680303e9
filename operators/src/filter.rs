//! `filter`: keep the records whose value passes a predicate.

use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::sync::Arc;

/// Keeps a record when `f(&value)` is true.
pub struct Filter<F>(pub Arc<F>);

impl<K, V, F> Operator<K, V> for Filter<F>
where
    K: Send + 'static,
    V: Send + 'static,
    F: Fn(&V) -> bool + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = V;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, V>,
    ) -> Result<()> {
        if (self.0)(&record.value) {
            out.collect(record)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn keeps_only_passing_values() {
        let mut h = Harness::new(Filter(Arc::new(|v: &i32| v % 2 == 0)));
        for v in 0..6 {
            h.push(None::<()>, v).unwrap();
        }
        assert_eq!(h.values(), vec![0, 2, 4]);
    }
}
