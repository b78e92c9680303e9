//! # payment_timeouts — event-time timers: flag the orders not paid within 30 s, exactly once
//!
//! With no arguments: starts the local broker (unless `KAFKA_BROKERS` is set), writes a
//! stream of order events — `placed@<ms>` and, for most orders, `paid@<ms>` some seconds
//! later — keyed by order id into 4 partitions, and runs two workers of the pipeline below
//! with forced rebalances. The event time is in the payload (`with_timestamp`); the Kafka
//! timestamps are all the same.
//!
//! The operator `PaymentTimeout` keeps each open order in keyed state and schedules an
//! event-time timer at `placed + 30 s` ([`Context::schedule_event_time`]); a payment in time
//! cancels it; when the task's stream time reaches it, `on_timer` emits `unpaid`. Timers
//! live in keyed state with a changelog, so they move with their partition and fire once.
//!
//! Then it checks the read_committed output against the input: exactly the orders with no
//! payment before their deadline, each once (orders whose deadline lies beyond the last event
//! of their partition are still open: stream time moves only with records). It prints
//! `verified: N unpaid orders of M, 0 wrong` and exits non-zero on any difference.
//!
//! ```text
//! cargo run --release --example payment_timeouts
//! ```

mod support;

use anyhow::bail;
use clap::Parser;
use exactly::framework::{KeyedState, StateDescriptor, Timer};
use exactly::prelude::*;
use exactly_testkit::{self as testkit, Isolation, Loader};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long an order may stay unpaid.
const DEADLINE_MS: i64 = 30_000;

/// Flags orders not paid within [`DEADLINE_MS`] of event time.
struct PaymentTimeout {
    /// Open orders: id → placed at.
    placed: KeyedState<String, i64>,
}

impl Operator<String, String> for PaymentTimeout {
    type OutKey = String;
    type OutValue = String;

    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context,
        _: &mut dyn Collector<String, String>,
    ) -> exactly::Result<()> {
        let (Some(id), Some(at)) = (r.key, r.timestamp) else {
            return Ok(());
        };
        if r.value.starts_with("placed@") {
            self.placed.put(&id, &at)?;
            ctx.schedule_event_time(&id, at + DEADLINE_MS)?;
        } else if let Some(placed) = self.placed.get(&id)? {
            // Paid in time: the timer goes.
            self.placed.delete(&id)?;
            ctx.cancel_event_time(&id, placed + DEADLINE_MS)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        _: &mut Context,
        out: &mut dyn Collector<String, String>,
    ) -> exactly::Result<()> {
        let Some(id) = timer.key::<String>()? else {
            return Ok(());
        };
        if self.placed.get(&id)?.is_some() {
            self.placed.delete(&id)?;
            out.collect(timer.record(Some(id), "unpaid".to_string()))?;
        }
        Ok(())
    }
}

/// The pipeline: event time from the payload, then the timeouts.
fn payment_timeouts(input: &str, output: &str) -> Pipeline {
    Pipeline::from_topic_with_key(input, Serde::string(), Serde::string())
        .with_timestamp(|r: &Record<String, String>| r.value.split_once('@')?.1.parse().ok())
        .apply_with("timeouts", |ctx: &mut Context| {
            ctx.enable_timers()?;
            Ok(PaymentTimeout {
                placed: ctx.keyed_state(&StateDescriptor::new("placed"))?,
            })
        })
        .to_topic(output, Serde::string(), Serde::string())
}

#[derive(Parser, Debug)]
#[command(about = "Flag orders not paid within 30 s of event time, exactly once; verify.")]
struct Args {
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// Orders to generate.
    #[arg(long, default_value_t = 20_000)]
    orders: u32,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

/// One input event: partition, order id, payload, event time.
type Event = (i32, String, String, i64);

/// Orders every 50 ms of event time; 6 in 7 paid 1 to 45 s later (so some too late).
fn events(orders: u32, partitions: i32, first: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for i in 0..orders as i64 {
        let (id, p) = (format!("order-{i}"), (i % partitions as i64) as i32);
        let placed = first + i * 50;
        events.push((p, id.clone(), format!("placed@{placed}"), placed));
        if i % 7 != 0 {
            let paid = placed + 1_000 * (1 + (i * 37) % 45);
            events.push((p, id, format!("paid@{paid}"), paid));
        }
    }
    // In event-time order within each partition (ties: placements first).
    events.sort_by_key(|e| (e.3, !e.2.starts_with("placed")));
    events
}

/// The orders whose deadline passes, within their partition's events, before a payment.
fn expected_unpaid(events: &[Event]) -> BTreeSet<String> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut placed: BTreeMap<&str, i64> = BTreeMap::new();
    let mut paid: BTreeMap<&str, i64> = BTreeMap::new();
    let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
    for (p, id, v, t) in events {
        let e = last.entry(*p).or_insert(*t);
        *e = (*e).max(*t);
        if v.starts_with("placed") {
            placed.insert(id, *t);
            partition_of.insert(id, *p);
        } else {
            paid.insert(id, *t);
        }
    }
    placed
        .iter()
        .filter(|(id, at)| {
            let deadline = **at + DEADLINE_MS;
            let reached = last[&partition_of[**id]] >= deadline;
            reached && paid.get(**id).is_none_or(|t| *t >= deadline)
        })
        .map(|(id, _)| id.to_string())
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing();
    let args = Args::parse();
    let brokers = support::brokers(&args.brokers)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let first = now - args.orders as i64 * 50 - 60_000;
    let events = events(args.orders, args.partitions, first);
    let want = expected_unpaid(&events);

    let app = testkit::unique_name("payment-timeouts");
    let (input, output) = (format!("{app}-orders"), format!("{app}-unpaid"));
    for t in [&input, &output] {
        testkit::create_topic(&brokers, t, args.partitions)?;
    }
    Loader::new(&brokers)?.send_at(
        &input,
        events
            .iter()
            .map(|(p, id, v, _)| (Some(*p), Some(id.as_str()), v.as_str(), Some(first - 1))),
    )?;
    println!(
        "loaded {} order events ({} orders) into {input} on {brokers}",
        events.len(),
        args.orders
    );

    let state_dir = std::env::temp_dir()
        .join("exactly-payment-timeouts")
        .join(&app);
    let run = support::run_with_rebalances(
        |worker| {
            Ok(Config::new(&app, &brokers)
                .with_state_dir(state_dir.join(worker))
                .with_env()?)
        },
        || payment_timeouts(&input, &output),
        (brokers.as_str(), app.as_str(), input.as_str()),
        events.len() as u64,
        || Ok(testkit::caught_up(&brokers, &app, &input)?),
    )
    .await?;
    println!(
        "processed {} events in {:.1} s ({} forced rebalances, {} transactions)",
        events.len(),
        run.elapsed.as_secs_f64(),
        run.rebalances,
        run.stats.commits,
    );

    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for r in testkit::read_to_end(
        &brokers,
        &output,
        Isolation::ReadCommitted,
        Duration::from_secs(120),
    )? {
        let id = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string();
        *got.entry(id).or_default() += 1;
    }
    let missing: Vec<&String> = want.iter().filter(|id| !got.contains_key(*id)).collect();
    let wrong: Vec<(&String, &usize)> = got
        .iter()
        .filter(|(id, n)| **n != 1 || !want.contains(*id))
        .collect();
    let changelogs = ["placed", "timers", "timers-stream-time"]
        .map(|s| exactly::framework::state::changelog::topic_name(&app, "timeouts", s));
    let mut topics = vec![input.as_str(), output.as_str()];
    topics.extend(changelogs.iter().map(String::as_str));
    testkit::delete_topic(&brokers, &topics)?;
    let _ = std::fs::remove_dir_all(&state_dir);
    println!(
        "verified: {} unpaid orders of {}, {} wrong",
        want.len(),
        args.orders,
        missing.len() + wrong.len()
    );
    if want.is_empty() || !missing.is_empty() || !wrong.is_empty() {
        eprintln!(
            "missing e.g. {:?}; duplicated or unexpected e.g. {:?}",
            &missing[..missing.len().min(10)],
            &wrong[..wrong.len().min(10)]
        );
        bail!("the unpaid orders do not match the input");
    }
    Ok(())
}
