//! `inspect`: look at each record (log it, count it) and pass it on unchanged.

use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::sync::Arc;

/// Calls `f(&record)` and passes the record on. Mind that records of an aborted cycle
/// are seen again when they are replayed: `f` is a side effect outside the transaction.
pub struct Inspect<F>(pub Arc<F>);

impl<K, V, F> Operator<K, V> for Inspect<F>
where
    K: Send + 'static,
    V: Send + 'static,
    F: Fn(&Record<K, V>) + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = V;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, V>,
    ) -> Result<()> {
        (self.0)(&record);
        out.collect(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn sees_every_record_and_passes_it_on() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let mut h = Harness::new(Inspect(Arc::new(move |_: &Record<(), u8>| {
            s.fetch_add(1, Ordering::Relaxed);
        })));
        for v in 0..4u8 {
            h.push(None, v).unwrap();
        }
        assert_eq!(h.values(), vec![0, 1, 2, 3]);
        assert_eq!(seen.load(Ordering::Relaxed), 4);
    }
}
