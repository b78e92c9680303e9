//! # clicks — one input, two results: a pipeline is a graph (`tee`)
//!
//! With no arguments: starts the local broker (unless `KAFKA_BROKERS` is set), writes
//! 100 000 clicks `user,country` into 4 partitions, and runs two workers of one pipeline
//! with forced rebalances: the clicks are read once, counted per country in a branch
//! (`tee`, behind its own repartition) and per user on the main line, each to its own
//! topic — every click's effects on both counts in one transaction.
//!
//! Then it checks that each user's and each country's last count read_committed equals a
//! direct count of the input, prints the top countries and `verified: N users, M countries,
//! 0 wrong`, and exits non-zero on any difference.
//!
//! ```text
//! cargo run --release --example clicks
//! ```

mod support;

use anyhow::bail;
use clap::Parser;
use exactly::prelude::*;
use exactly_testkit::{self as testkit, Isolation, Loader};
use std::collections::BTreeMap;
use std::time::Duration;

const COUNTRIES: [&str; 8] = ["de", "fr", "jp", "br", "us", "in", "ng", "nz"];

/// The pipeline: clicks keyed by user; per country in a branch, per user on the main line.
fn clicks(input: &str, per_user: &str, per_country: &str) -> Pipeline {
    let per_country = per_country.to_string();
    Pipeline::from_topic_with_key(input, Serde::string(), Serde::string())
        .tee(move |clicks| {
            clicks
                .key_by(
                    "by-country",
                    |click: &String| click.split(',').nth(1).unwrap_or("").to_string(),
                    Serde::string(),
                    Serde::string(),
                )
                .count("per-country")
                .map(|n: u64| n.to_string())
                .to_topic(per_country, Serde::string(), Serde::string())
        })
        .count("per-user")
        .map(|n: u64| n.to_string())
        .to_topic(per_user, Serde::string(), Serde::string())
}

#[derive(Parser, Debug)]
#[command(about = "Count clicks per user and per country from one read of the input; verify.")]
struct Args {
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// Clicks to generate.
    #[arg(long, default_value_t = 100_000)]
    clicks: u32,
    /// Distinct users.
    #[arg(long, default_value_t = 2_000)]
    users: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing();
    let args = Args::parse();
    let brokers = support::brokers(&args.brokers)?;
    let events: Vec<(String, String)> = (0..args.clicks as u64)
        .map(|i| {
            let user = (i * 7919) % args.users as u64;
            let country = COUNTRIES[(user % COUNTRIES.len() as u64) as usize];
            (format!("user-{user}"), format!("user-{user},{country}"))
        })
        .collect();
    let mut want_users: BTreeMap<String, u64> = BTreeMap::new();
    let mut want_countries: BTreeMap<String, u64> = BTreeMap::new();
    for (user, click) in &events {
        *want_users.entry(user.clone()).or_default() += 1;
        let country = click.split(',').nth(1).unwrap_or("").to_string();
        *want_countries.entry(country).or_default() += 1;
    }

    let app = testkit::unique_name("clicks");
    let (input, per_user, per_country) = (
        format!("{app}-clicks"),
        format!("{app}-per-user"),
        format!("{app}-per-country"),
    );
    for t in [&input, &per_user, &per_country] {
        testkit::create_topic(&brokers, t, 4)?;
    }
    Loader::new(&brokers)?.send(
        &input,
        events
            .iter()
            .map(|(u, c)| (None, Some(u.as_str()), c.as_str())),
    )?;
    println!("loaded {} clicks into {input} on {brokers}", events.len());

    let state_dir = std::env::temp_dir().join("exactly-clicks").join(&app);
    let hop = format!("{app}-by-country-repartition");
    let run = support::run_with_rebalances(
        |worker| {
            Ok(Config::new(&app, &brokers)
                .with_state_dir(state_dir.join(worker))
                .with_env()?)
        },
        || clicks(&input, &per_user, &per_country),
        (brokers.as_str(), app.as_str(), input.as_str()),
        events.len() as u64,
        || {
            Ok(testkit::caught_up(&brokers, &app, &input)?
                && testkit::caught_up(&brokers, &app, &hop)?)
        },
    )
    .await?;
    println!(
        "counted {} clicks twice in {:.1} s ({} forced rebalances, {} transactions)",
        events.len(),
        run.elapsed.as_secs_f64(),
        run.rebalances,
        run.stats.commits
    );

    let last_counts = |topic: &str| -> anyhow::Result<BTreeMap<String, u64>> {
        let mut last = BTreeMap::new();
        for r in testkit::read_to_end(
            &brokers,
            topic,
            Isolation::ReadCommitted,
            Duration::from_secs(120),
        )? {
            let text = |b: &Option<Vec<u8>>| {
                String::from_utf8_lossy(b.as_deref().unwrap_or_default()).to_string()
            };
            last.insert(text(&r.key), text(&r.value).parse()?);
        }
        Ok(last)
    };
    let (users, countries) = (last_counts(&per_user)?, last_counts(&per_country)?);
    let mut top: Vec<(&String, &u64)> = countries.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    println!("clicks per country: {top:?}");
    let wrong = want_users
        .iter()
        .filter(|(u, n)| users.get(*u) != Some(n))
        .count()
        + want_countries
            .iter()
            .filter(|(c, n)| countries.get(*c) != Some(n))
            .count()
        + users
            .keys()
            .filter(|u| !want_users.contains_key(*u))
            .count()
        + countries
            .keys()
            .filter(|c| !want_countries.contains_key(*c))
            .count();
    let changelogs = ["per-user", "per-country"]
        .map(|op| exactly::framework::state::changelog::topic_name(&app, op, "counts"));
    testkit::delete_topic(
        &brokers,
        &[
            &input,
            &per_user,
            &per_country,
            &hop,
            &changelogs[0],
            &changelogs[1],
        ],
    )?;
    let _ = std::fs::remove_dir_all(&state_dir);
    println!(
        "verified: {} users, {} countries, {wrong} wrong",
        want_users.len(),
        want_countries.len()
    );
    if wrong > 0 {
        bail!("the counts do not match the input");
    }
    Ok(())
}
