//! `dedup`: drop records whose key was already seen within a time horizon.

use crate::stream_time::StreamTime;
use exactly_framework::{
    Collector, Context, KeyedState, Operator, Record, Result, StateDescriptor,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Lets a record through unless a record with the same key was let through less than
/// `horizon_ms` earlier, in stream time (the largest record timestamp of the task so far;
/// an out-of-order record counts at the stream time). State: the time each key was last
/// let through (state `seen`) and the stream time; keys older than the horizon are purged as
/// stream time advances, so the state holds about one horizon of keys.
pub struct Dedup<K> {
    horizon_ms: i64,
    seen: KeyedState<Option<K>, i64>,
    time: StreamTime,
    last_purge: i64,
    reload: bool,
}

impl<K: Serialize> Dedup<K> {
    /// Dedup within `horizon_ms` milliseconds, its state opened in `ctx`'s task.
    ///
    /// # Errors
    /// As [`Context::keyed_state`].
    pub fn open(ctx: &mut Context, horizon_ms: i64) -> Result<Self> {
        Ok(Dedup {
            horizon_ms: horizon_ms.max(1),
            seen: ctx.keyed_state(&StateDescriptor::new("seen"))?,
            time: StreamTime::open(ctx)?,
            last_purge: i64::MIN,
            reload: false,
        })
    }
}

impl<K, V> Operator<K, V> for Dedup<K>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Send + 'static,
{
    type OutKey = K;
    type OutValue = V;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, V>,
    ) -> Result<()> {
        let (seen, time) = (&self.seen, &mut self.time);
        if self.reload {
            time.reload()?;
            self.reload = false;
        }
        let (now, _) = time.advance(record.timestamp)?;
        // Purge keys that can no longer drop anything, each half horizon of stream time.
        if now.saturating_sub(self.last_purge) >= self.horizon_ms / 2 {
            for (key, at) in seen.entries()? {
                if now.saturating_sub(at) >= self.horizon_ms {
                    seen.delete(&key)?;
                }
            }
            self.last_purge = now;
        }
        match seen.get(&record.key)? {
            Some(at) if now.saturating_sub(at) < self.horizon_ms => Ok(()),
            _ => {
                seen.put(&record.key, &now)?;
                out.collect(record)
            }
        }
    }

    fn on_abort(&mut self, _: &mut Context) {
        self.reload = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_framework::testing::Harness;

    #[test]
    fn drops_repeats_within_the_horizon_only() {
        let mut h: Harness<String, u32, _> = Harness::build(|ctx| Dedup::open(ctx, 100)).unwrap();
        let k = |s: &str| Some(s.to_string());
        h.push_at(k("a"), 1, 1_000).unwrap(); // through
        h.push_at(k("a"), 2, 1_050).unwrap(); // repeat within 100 ms: dropped
        h.push_at(k("b"), 3, 1_060).unwrap(); // another key: through
        h.push_at(k("a"), 4, 1_100).unwrap(); // 100 ms later: through again
        h.push_at(k("b"), 5, 1_000).unwrap(); // out of order, counts at 1_100: dropped
        h.push_at(k("b"), 6, 1_200).unwrap(); // 140 ms after b was let through: through
        assert_eq!(h.values(), vec![1, 3, 4, 6]);
    }

    #[test]
    fn an_aborted_cycle_forgets_its_keys_and_stream_time() {
        let mut h: Harness<String, u32, _> = Harness::build(|ctx| Dedup::open(ctx, 100)).unwrap();
        h.push_at(Some("a".into()), 1, 1_000).unwrap();
        h.barrier().unwrap();
        h.push_at(Some("b".into()), 2, 5_000).unwrap();
        h.abort();
        // Replayed: b was never committed; stream time is back at 1_000, so `a` repeats.
        h.push_at(Some("a".into()), 3, 1_010).unwrap();
        h.push_at(Some("b".into()), 4, 1_020).unwrap();
        assert_eq!(h.values(), vec![1, 2, 4]);
    }
}
