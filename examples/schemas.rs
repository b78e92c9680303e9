//! # schemas — Avro in, Protobuf out, in the schema-registry wire format
//!
//! The pipeline is `exactly_testkit::orders::pipeline`. With no arguments: starts the local
//! broker (unless `KAFKA_BROKERS` is set), writes 10 000 orders as Avro (Confluent wire format: magic byte, schema id, Avro body) keyed by
//! customer, runs a worker that sums each customer's orders and writes the running totals as
//! Protobuf messages, then decodes the read_committed output and checks every total.
//! Prints `verified: N totals, 0 wrong`; exits non-zero on any difference.
//!
//! `--registry URL` uses a schema registry that speaks the Confluent REST API (Confluent,
//! Apicurio's ccompat API, Karapace, Redpanda): the serdes register their schemas there and
//! fetch writer schemas by id. Without it the ids are fixed (1 and 2), as a deployment that
//! registered them beforehand would have them.
//!
//! ```text
//! cargo run --release --example schemas
//! cargo run --release --example schemas -- --registry http://127.0.0.1:8081
//! ```

mod support;

use anyhow::bail;
use clap::Parser;
use exactly::framework::schema::SchemaRegistry;
use exactly::framework::Codec;
use exactly::prelude::*;
use exactly_testkit::orders::{self, Order, Subjects, Total, ORDER, TOTAL};
use exactly_testkit::{self as testkit, Isolation, Loader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Avro orders to Protobuf totals through a schema registry, verified.")]
struct Args {
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// A schema registry (Confluent REST API); default: fixed ids, no registry.
    #[arg(long)]
    registry: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing();
    let args = Args::parse();
    let brokers = support::brokers(&args.brokers)?;
    let app = testkit::unique_name("schemas");
    let (orders_topic, totals_topic) = (format!("{app}-orders"), format!("{app}-totals"));
    let (orders_subject, totals_subject) = (
        format!("{orders_topic}-value"),
        format!("{totals_topic}-value"),
    );
    let registry = Arc::new(match &args.registry {
        Some(url) => SchemaRegistry::new(url),
        None => SchemaRegistry::fixed()
            .with_schema(1, &orders_subject, ORDER)
            .with_schema(2, &totals_subject, TOTAL),
    });
    for t in [&orders_topic, &totals_topic] {
        testkit::create_topic(&brokers, t, 4)?;
    }
    let orders_serde = Serde::avro::<Order>(ORDER, orders_subject.clone(), &registry)?;
    let orders: Vec<Order> = (0..10_000)
        .map(|i| Order {
            customer: format!("customer-{}", i % 50),
            cents: 100 + (i * 37) % 5_000,
        })
        .collect();
    let encoded = orders
        .iter()
        .map(|o| {
            Ok((
                o.customer.clone(),
                orders_serde
                    .encode(o)
                    .map_err(anyhow::Error::msg)?
                    .unwrap_or_default()
                    .into_owned(),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Loader::new(&brokers)?.send(
        &orders_topic,
        encoded.iter().map(|(k, v)| (None, Some(k.as_str()), v)),
    )?;
    println!(
        "wrote {} Avro orders to {orders_topic} on {brokers}",
        orders.len()
    );

    let subjects = Subjects {
        orders: &orders_subject,
        totals: &totals_subject,
    };
    let pipeline = orders::pipeline(&orders_topic, &totals_topic, subjects, &registry)?;
    let state_dir = std::env::temp_dir().join("exactly-schemas").join(&app);
    let worker = Runtime::new(
        Config::new(&app, &brokers)
            .with_state_dir(&state_dir)
            .with_env()?,
    )
    .spawn(pipeline)?;
    while !testkit::caught_up(&brokers, &app, &orders_topic)? {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.stop();
    worker.join()?;

    let totals_serde = Serde::protobuf::<Total>(TOTAL, totals_subject, &registry);
    let mut got: BTreeMap<(String, i64, u64), usize> = BTreeMap::new();
    for r in testkit::read_to_end(
        &brokers,
        &totals_topic,
        Isolation::ReadCommitted,
        Duration::from_secs(120),
    )? {
        let customer = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string();
        let t = totals_serde
            .decode(r.value.as_deref())
            .map_err(anyhow::Error::msg)?;
        *got.entry((customer, t.cents, t.orders)).or_default() += 1;
    }
    let want = orders::expected_totals(&orders);
    let wrong = want.iter().filter(|(k, n)| got.get(*k) != Some(n)).count()
        + got.keys().filter(|k| !want.contains_key(*k)).count();
    let changelog = exactly::framework::state::changelog::topic_name(&app, "totals", "aggregates");
    testkit::delete_topic(&brokers, &[&orders_topic, &totals_topic, &changelog])?;
    let _ = std::fs::remove_dir_all(&state_dir);
    println!("verified: {} totals, {wrong} wrong", want.len());
    if wrong > 0 {
        bail!("the Protobuf totals do not match the Avro orders");
    }
    Ok(())
}
