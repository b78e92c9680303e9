//! `branch`: route the records that match a predicate to another topic, in the same
//! transaction; the others continue down the pipeline.

use exactly_framework::{Collector, Context, Operator, Record, Result, Sink};
use std::sync::Arc;

/// Sends a record to `sink` when `predicate(&record)` holds, downstream otherwise. The
/// side records are part of the open transaction: they become visible with the cycle's
/// other output, once.
pub struct Branch<K, V, F> {
    /// Which records leave the pipeline.
    pub predicate: Arc<F>,
    /// Where they go.
    pub sink: Arc<Sink<K, V>>,
}

impl<K, V, F> Operator<K, V> for Branch<K, V, F>
where
    K: Send + 'static,
    V: Send + 'static,
    F: Fn(&Record<K, V>) -> bool + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = V;

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut Context,
        out: &mut dyn Collector<K, V>,
    ) -> Result<()> {
        if (self.predicate)(&record) {
            ctx.emit_to(&self.sink, record)
        } else {
            out.collect(record)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;
    use exactly_framework::Serde;

    #[test]
    fn matching_records_go_to_the_side_topic_the_rest_downstream() {
        let mut h = Harness::new(Branch {
            predicate: Arc::new(|r: &Record<String, String>| r.value.starts_with('!')),
            sink: Arc::new(Sink::topic("alerts", Serde::string(), Serde::string())),
        });
        for v in ["a", "!b", "c", "!d"] {
            h.push(Some("k".to_string()), v.to_string()).unwrap();
        }
        assert_eq!(h.values(), vec!["a".to_string(), "c".to_string()]);
        let side: Vec<_> = h
            .side_records()
            .iter()
            .map(|r| (r.topic.as_str(), r.value.clone().unwrap()))
            .collect();
        assert_eq!(
            side,
            vec![("alerts", b"!b".to_vec()), ("alerts", b"!d".to_vec())]
        );
    }
}
