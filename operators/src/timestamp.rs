//! `with_timestamp`: take each record's event time from its payload.

use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::sync::Arc;

/// Sets each record's timestamp to `f(&record)` (ms since the epoch), for times carried in
/// the payload: windows, timers and the output records then use it (Kafka Streams'
/// `TimestampExtractor`, Flink's `TimestampAssigner`). `None` keeps the record's own
/// timestamp.
pub struct WithTimestamp<F>(pub Arc<F>);

impl<K, V, F> Operator<K, V> for WithTimestamp<F>
where
    K: Send + 'static,
    V: Send + 'static,
    F: Fn(&Record<K, V>) -> Option<i64> + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = V;

    fn process(
        &mut self,
        mut record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, V>,
    ) -> Result<()> {
        if let Some(t) = (self.0)(&record) {
            record.timestamp = Some(t);
        }
        out.collect(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn the_payload_time_replaces_the_record_timestamp_unless_none() {
        let f = |r: &Record<(), String>| r.value.split_once('@').and_then(|(_, t)| t.parse().ok());
        let mut h = Harness::new(WithTimestamp(Arc::new(f)));
        h.push_at(None, "a@1700".into(), 5).unwrap();
        h.push_at(None, "b".into(), 6).unwrap();
        let times: Vec<_> = h.output().iter().map(|r| r.timestamp).collect();
        assert_eq!(times, [Some(1700), Some(6)]);
    }
}
