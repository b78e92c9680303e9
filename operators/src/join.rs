//! `join_table`: a stream–table join against a *global table* materialised from a compacted
//! topic.
//!
//! ```
//! use exactly_framework::{Pipeline, Serde};
//! use exactly_operators::{StreamExt, Table};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Customer { name: String }
//!
//! // Orders keyed by customer id; customers in a compacted topic keyed by customer id.
//! let pipeline = Pipeline::from_topic_with_key("orders", Serde::string(), Serde::string())
//!     .join_table(
//!         "customers",
//!         Table::topic("customers", Serde::string(), Serde::json::<Customer>()),
//!         |order: String, customer: Option<&Customer>| {
//!             customer.map(|c| format!("{order} for {}", c.name)) // inner join: None drops
//!         },
//!     )
//!     .to_topic("orders-enriched", Serde::string(), Serde::string());
//! assert_eq!(pipeline.output_topic(), "orders-enriched");
//! ```
//!
//! The table side — a global table materialised from a compacted topic, or rows in memory —
//! is the framework's ([`exactly_framework::table`]): its semantics (one materialisation per
//! process, bootstrap before the first record, updates concurrent with the stream, errors)
//! are documented there. This operator only looks each record's key up in it.

use exactly_framework::table::{GlobalTable, Table};
use exactly_framework::{Collector, Context, Operator, Record, Result};
use std::hash::Hash;
use std::sync::Arc;

/// Joins each record with the row of a [`Table`] under the record's key:
/// `joiner(value, row)` gives the output value, or `None` to drop the record. An inner join
/// returns `None` when the row is missing; a left join always returns `Some`. Records
/// without a key meet no row. Key, timestamp and headers are kept. See the
/// [module documentation](self) for the table's semantics; chain it with
/// [`StreamExt::join_table`](crate::StreamExt::join_table).
///
/// ```
/// use exactly_framework::testing::Harness;
/// use exactly_operators::{Table, TableJoin};
/// use std::sync::Arc;
///
/// let table = Table::in_memory([("c1".to_string(), "Ada".to_string())]);
/// let left = |order: &str, name: Option<&String>| {
///     Some(format!("{order}:{}", name.map_or("?", |n| n.as_str())))
/// };
/// let mut h = Harness::build(|ctx| TableJoin::open(ctx, &table, Arc::new(left))).unwrap();
/// h.push(Some("c1".to_string()), "o1").unwrap();
/// h.push(Some("c2".to_string()), "o2").unwrap();
/// assert_eq!(h.values(), ["o1:Ada", "o2:?"]);
/// ```
pub struct TableJoin<K, T, F> {
    joiner: Arc<F>,
    rows: GlobalTable<K, T>,
}

impl<K, T, F> TableJoin<K, T, F>
where
    K: Eq + Hash + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    /// A join of the stream against `table` with `joiner` (shared by the tasks), the table
    /// opened in `ctx`'s task: a topic table is materialised in this process (or found
    /// loaded) before this returns.
    ///
    /// ```
    /// use exactly_framework::testing::Harness;
    /// use exactly_operators::{Table, TableJoin};
    /// use std::sync::Arc;
    ///
    /// let inner = |v: u32, row: Option<&u32>| row.map(|r| v * r);
    /// let table = Table::in_memory([(1u8, 10u32)]);
    /// let mut h = Harness::build(|ctx| TableJoin::open(ctx, &table, Arc::new(inner))).unwrap();
    /// h.push(Some(1), 4).unwrap();
    /// assert_eq!(h.values(), [40]);
    /// ```
    ///
    /// # Errors
    /// As [`Context::global_table`].
    pub fn open(ctx: &mut Context, table: &Table<K, T>, joiner: Arc<F>) -> Result<Self> {
        Ok(TableJoin {
            joiner,
            rows: ctx.global_table(table)?,
        })
    }
}

impl<K, V, T, O, F> Operator<K, V> for TableJoin<K, T, F>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: 'static,
    T: Send + Sync + 'static,
    O: Send + 'static,
    F: Fn(V, Option<&T>) -> Option<O> + Send + Sync + 'static,
{
    type OutKey = K;
    type OutValue = O;

    fn process(
        &mut self,
        record: Record<K, V>,
        _: &mut Context,
        out: &mut dyn Collector<K, O>,
    ) -> Result<()> {
        let row = match &record.key {
            Some(k) => self.rows.get(k)?,
            None => None,
        };
        let Record {
            key,
            value,
            timestamp,
            headers,
            origin,
        } = record;
        match (self.joiner)(value, row.as_deref()) {
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
    use exactly_framework::table::MemoryTable;
    use exactly_framework::testing::Harness;
    use exactly_framework::Serde;

    fn customers() -> MemoryTable<String, String> {
        MemoryTable::new([
            ("c1".to_string(), "Ada".to_string()),
            ("c2".to_string(), "Grace".to_string()),
        ])
    }

    fn key(k: &str) -> Option<String> {
        Some(k.to_string())
    }

    #[test]
    fn inner_join_drops_records_without_a_row() {
        let inner = |order: &str, name: Option<&String>| name.map(|n| format!("{order}:{n}"));
        let mut h =
            Harness::build(|ctx| TableJoin::open(ctx, &Table::from(customers()), Arc::new(inner)))
                .unwrap();
        h.push(key("c1"), "o1").unwrap();
        h.push(key("c9"), "o2").unwrap();
        h.push(None, "o3").unwrap();
        h.push(key("c2"), "o4").unwrap();
        let out = h.take_output();
        let got: Vec<_> = out.iter().map(|r| (r.key.as_deref(), &*r.value)).collect();
        assert_eq!(got, [(Some("c1"), "o1:Ada"), (Some("c2"), "o4:Grace")]);
        assert_eq!(
            out[1].origin.offset, 3,
            "the output keeps its input's origin"
        );
    }

    #[test]
    fn left_join_meets_none_for_missing_rows_and_keyless_records() {
        let left = |order: &str, name: Option<&String>| Some((order.to_string(), name.cloned()));
        let mut h =
            Harness::build(|ctx| TableJoin::open(ctx, &Table::from(customers()), Arc::new(left)))
                .unwrap();
        h.push(key("c2"), "o1").unwrap();
        h.push(key("c9"), "o2").unwrap();
        h.push(None, "o3").unwrap();
        assert_eq!(
            h.values(),
            [
                ("o1".to_string(), Some("Grace".to_string())),
                ("o2".to_string(), None),
                ("o3".to_string(), None),
            ]
        );
    }

    #[test]
    fn later_records_meet_updates_and_tombstones() {
        let table = customers();
        let left = |order: &str, name: Option<&String>| {
            Some(format!("{order}:{}", name.map_or("-", |n| n.as_str())))
        };
        let mut h =
            Harness::build(|ctx| TableJoin::open(ctx, &Table::from(table.clone()), Arc::new(left)))
                .unwrap();
        h.push(key("c1"), "o1").unwrap();
        table.put("c1".into(), "Ada Lovelace".into());
        h.push(key("c1"), "o2").unwrap();
        assert!(table.delete(&"c1".to_string()));
        h.push(key("c1"), "o3").unwrap();
        table.put("c3".into(), "Hedy".into());
        h.push(key("c3"), "o4").unwrap();
        h.barrier().unwrap();
        assert_eq!(h.values(), ["o1:Ada", "o2:Ada Lovelace", "o3:-", "o4:Hedy"]);
    }

    #[test]
    fn a_replayed_cycle_meets_the_table_as_it_is_then() {
        // No state: an aborted cycle leaves nothing behind, and the replay joins again.
        let table = customers();
        let inner = |order: &str, name: Option<&String>| name.map(|n| format!("{order}:{n}"));
        let mut h = Harness::build(|ctx| {
            TableJoin::open(ctx, &Table::from(table.clone()), Arc::new(inner))
        })
        .unwrap();
        h.push(key("c1"), "o1").unwrap();
        h.abort();
        table.put("c1".into(), "Ada v2".into());
        h.push(key("c1"), "o1").unwrap();
        h.barrier().unwrap();
        assert_eq!(h.values(), ["o1:Ada", "o1:Ada v2"]);
    }

    #[test]
    fn a_topic_table_under_the_harness_is_a_clear_error() {
        let table: Table<String, String> =
            Table::topic("customers", Serde::string(), Serde::string());
        let inner = |order: &str, name: Option<&String>| name.map(|n| format!("{order}:{n}"));
        let built =
            Harness::<String, &str, _>::build(|ctx| TableJoin::open(ctx, &table, Arc::new(inner)));
        let Err(err) = built else {
            panic!("a topic table has no Kafka under the harness")
        };
        let err = err.to_string();
        assert!(
            err.contains("`customers`") && err.contains("Table::in_memory"),
            "{err}"
        );
    }
}
