//! Schema'd data on the broker: Avro in, Protobuf out, in the Confluent wire format, through
//! a keyed aggregation and a forced restart; a record that is not in the wire format goes to
//! the dead-letter topic. The read_committed output is decoded and compared in full.
//!
//! No schema registry can be started here (see docs/operators.md, "Schema'd data"): the
//! serdes use a fixed registry (ids given up front), so the bytes are the wire format a
//! registry-backed serde writes; the registry client itself is unit-tested against a
//! stand-in server (`schema::tests`).

mod common;

use common::*;
use exactly::framework::schema::SchemaRegistry;
use exactly::framework::Codec;
use exactly::prelude::*;
use exactly_testkit::orders::{self, Order, Subjects, Total, ORDER, TOTAL};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn registry() -> Arc<SchemaRegistry> {
    Arc::new(
        SchemaRegistry::fixed()
            .with_schema(1, "orders-value", ORDER)
            .with_schema(2, "totals-value", TOTAL),
    )
}

fn pipeline(input: &str, output: &str, dead: &str) -> Pipeline {
    let subjects = Subjects {
        orders: "orders-value",
        totals: "totals-value",
    };
    orders::pipeline(input, output, subjects, &registry())
        .unwrap()
        .on_bad_records(BadRecords::DeadLetter(dead.to_string()))
}

#[test]
fn avro_orders_become_protobuf_totals_exactly_once_and_a_foreign_record_is_dead_lettered() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "schemas-orders", 2);
    let output = new_topic(&b, "schemas-totals", 2);
    let dead = new_topic(&b, "schemas-dead", 1);
    let group = unique_name("schemas");
    let dir = std::env::temp_dir().join(unique_name("exactly-schemas"));
    let orders_serde = Serde::avro::<Order>(ORDER, "orders-value", &registry()).unwrap();
    let orders: Vec<Order> = (0..2_000)
        .map(|i| Order {
            customer: format!("c{}", i % 37),
            cents: 100 + i % 900,
        })
        .collect();
    let mut records: Vec<(String, Vec<u8>)> = orders
        .iter()
        .map(|o| {
            let bytes = orders_serde.encode(o).unwrap().unwrap().into_owned();
            (o.customer.clone(), bytes)
        })
        .collect();
    // A JSON record where Avro is expected: not in the wire format.
    let foreign = br#"{"customer":"c1","cents":5}"#.to_vec();
    records.insert(700, ("c1".into(), foreign.clone()));
    // Two runs: the second worker starts on an empty state dir (restores the totals).
    for (run, part) in records.chunks(1_001).enumerate() {
        produce(
            &b,
            &input,
            part.iter()
                .map(|(k, v)| (None, Some(k.as_str()), v.clone())),
        )
        .unwrap();
        let config = Config::new(&group, &b)
            .with_state_dir(dir.join(format!("run-{run}")))
            .with_commit_max_records(100);
        let w = Runtime::new(config)
            .spawn(pipeline(&input, &output, &dead))
            .unwrap();
        common::copy_check::wait_until_committed_by(
            &b,
            &group,
            &input,
            Duration::from_secs(60),
            &[&w],
        );
        w.stop();
        w.join().expect("the worker");
    }
    // Every order's running total, once, decoded from the wire format.
    let want = orders::expected_totals(&orders);
    let totals = Serde::protobuf::<Total>(TOTAL, "totals-value", &registry());
    let mut got: BTreeMap<(String, i64, u64), usize> = BTreeMap::new();
    for r in read_to_end(&b, &output, Isolation::ReadCommitted, READ_DEADLINE).unwrap() {
        assert_eq!(&r.value.as_deref().unwrap()[..6], &[0, 0, 0, 0, 2, 0]);
        let t = totals.decode(r.value.as_deref()).unwrap();
        *got.entry((t.customer, t.cents, t.orders)).or_default() += 1;
    }
    assert_eq!(
        got.values().sum::<usize>(),
        orders.len(),
        "one total per order"
    );
    assert_eq!(got, want, "the totals, each once");
    let dead_letters = read_to_end(&b, &dead, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].value.as_deref(), Some(foreign.as_slice()));
    let changelog =
        exactly::framework::state::changelog::topic_name(&group, "totals", "aggregates");
    let _ = delete_topic(&b, &[&input, &output, &dead, &changelog]);
    let _ = std::fs::remove_dir_all(&dir);
}
