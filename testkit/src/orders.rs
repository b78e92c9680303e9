//! Schema'd data as the `schemas` example and test run it: Avro orders in, each customer's
//! running total out as Protobuf, both in the schema-registry wire format.

use exactly_framework::schema::SchemaRegistry;
use exactly_framework::{Collector, Context, Operator, Pipeline, Record, Serde};
use exactly_operators::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The orders' Avro schema.
pub const ORDER: &str = r#"{"type":"record","name":"Order","fields":[
    {"name":"customer","type":"string"},{"name":"cents","type":"long"}]}"#;

/// The totals' `.proto`.
pub const TOTAL: &str = "syntax = \"proto3\";\n\
    message Total { string customer = 1; int64 cents = 2; uint64 orders = 3; }\n";

/// An order, as [`ORDER`] says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// Who ordered (the record key too).
    pub customer: String,
    /// How much.
    pub cents: i64,
}

/// A customer's running total, as [`TOTAL`] says.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Total {
    /// Whose.
    #[prost(string, tag = "1")]
    pub customer: String,
    /// The sum of the customer's orders so far.
    #[prost(int64, tag = "2")]
    pub cents: i64,
    /// How many orders so far.
    #[prost(uint64, tag = "3")]
    pub orders: u64,
}

/// (customer, (cents, orders)) → the Protobuf total.
struct ToTotal;

impl Operator<String, (i64, u64)> for ToTotal {
    type OutKey = String;
    type OutValue = Total;
    fn process(
        &mut self,
        r: Record<String, (i64, u64)>,
        _: &mut Context,
        out: &mut dyn Collector<String, Total>,
    ) -> exactly_framework::Result<()> {
        let total = Total {
            customer: r.key.clone().unwrap_or_default(),
            cents: r.value.0,
            orders: r.value.1,
        };
        out.collect(r.with_value(total))
    }
}

/// The subjects of the orders' and the totals' schemas.
pub struct Subjects<'a> {
    /// Of [`ORDER`].
    pub orders: &'a str,
    /// Of [`TOTAL`].
    pub totals: &'a str,
}

/// Avro orders from `input` (keyed by customer) → a running total per customer
/// (aggregate `totals`, every update) → Protobuf totals to `output`.
///
/// # Errors
/// When the Avro schema does not parse (it does).
pub fn pipeline(
    input: &str,
    output: &str,
    subjects: Subjects<'_>,
    registry: &Arc<SchemaRegistry>,
) -> exactly_framework::Result<Pipeline> {
    Ok(Pipeline::from_topic_with_key(
        input,
        Serde::string(),
        Serde::avro::<Order>(ORDER, subjects.orders, registry)?,
    )
    .map(|o: Order| o.cents)
    .aggregate(
        "totals",
        || (0i64, 0u64),
        |(c, n), cents| (c + cents, n + 1),
    )
    .emit_every_update()
    .apply("to-total", || ToTotal)
    .to_topic(
        output,
        Serde::string(),
        Serde::protobuf::<Total>(TOTAL, subjects.totals, registry),
    ))
}

/// Every (customer, cents, orders) total the orders give, with how often (once each).
pub fn expected_totals(orders: &[Order]) -> BTreeMap<(String, i64, u64), usize> {
    let mut running: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
    let mut want = BTreeMap::new();
    for o in orders {
        let t = running.entry(&o.customer).or_default();
        *t = (t.0 + o.cents, t.1 + 1);
        *want.entry((o.customer.clone(), t.0, t.1)).or_default() += 1;
    }
    want
}
