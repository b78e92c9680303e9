//! `flat_map`: one value in, any number out.

use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::sync::Arc;

/// Emits one record per item of `f(value)`, each with the input's key, timestamp and
/// headers.
pub struct FlatMap<F>(pub Arc<F>);

impl<K, V, I, F> Operator<K, V> for FlatMap<F>
where
    K: Clone + Send + 'static,
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(V) -> I + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = I::Item;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, I::Item>,
    ) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
            origin,
        } = record;
        for item in (self.0)(value) {
            out.collect(Record {
                key: key.clone(),
                value: item,
                timestamp,
                headers: headers.clone(),
                origin: origin.clone(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn emits_every_item_with_the_input_key() {
        let split = |line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let mut h = Harness::new(FlatMap(Arc::new(split)));
        h.push(Some(7u8), "a b c".to_string()).unwrap();
        h.push(Some(8u8), String::new()).unwrap();
        let out = h.take_output();
        assert_eq!(
            out.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c", ""]
        );
        assert!(out[..3].iter().all(|r| r.key == Some(7)));
    }
}
