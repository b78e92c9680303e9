//! # ad_attribution — several inputs, a stream–stream join and a co-partitioned table
//!
//! With no arguments: starts the local broker (unless `KAFKA_BROKERS` is set) and writes
//! ad impressions into two topics (web and app, keyed by ad), the ads' campaigns into a
//! table topic (keyed by ad), then clicks (keyed by user, `ad|click` values) into a fourth.
//! Two workers of the pipeline below run with forced rebalances:
//!
//! - `Pipeline::from_topics([web, app])`: both impression topics as one stream;
//! - `join_stream`: a click attributes to its ad's impression when it came within 10 minutes
//!   (the clicks re-keyed by ad; both sides meet by key through an internal topic);
//! - `join_table_by_key`: each attribution enriched with its ad's campaign, from a table
//!   kept in the pipeline's own keyed state.
//!
//! Then it checks the read_committed output against the input — exactly the clicks within
//! 10 minutes of their impression, each once, with its campaign — prints
//! `verified: N attributed clicks of M, 0 wrong`, and exits non-zero on any difference.
//!
//! ```text
//! cargo run --release --example ad_attribution
//! ```

mod support;

use anyhow::bail;
use exactly::operators::stream_join::JoinWindows;
use exactly::operators::MapKey;
use exactly::prelude::*;
use exactly_testkit::{self as testkit, Isolation, Loader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ADS: i64 = 3_000;

/// The pipeline (topic names as arguments).
fn attribution(impressions: [&str; 2], clicks: &str, campaigns: &str, output: &str) -> Pipeline {
    let clicks_by_ad = Pipeline::from_topic_with_key(clicks, Serde::string(), Serde::string())
        .apply("clicks-by-ad", || {
            MapKey(Arc::new(|r: &Record<String, String>| {
                r.value.split_once('|').map(|(ad, _)| ad.to_string())
            }))
        });
    Pipeline::from_topics(impressions, Serde::string(), Serde::string())
        .join_stream(
            "attributed",
            clicks_by_ad,
            // Clicks are loaded after the impressions: the grace covers the whole input.
            JoinWindows::of(Duration::from_secs(600)).grace(Duration::from_secs(7_200)),
            |impression: &String, click: &String| {
                format!("{impression}|{}", click.split_once('|').map_or("", |c| c.1))
            },
        )
        .join_table_by_key(
            "campaigns",
            campaigns,
            Serde::string(),
            Serde::string(),
            |attributed: String, campaign: Option<&String>| {
                Some(format!(
                    "{attributed}|{}",
                    campaign.map_or("none", String::as_str)
                ))
            },
        )
        .to_topic(output, Serde::string(), Serde::string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing();
    let brokers = support::brokers(&None)?;
    let app = testkit::unique_name("ad-attribution");
    let t = |name: &str| format!("{app}-{name}");
    let (web, mobile, clicks, campaigns, output) = (
        t("impressions-web"),
        t("impressions-app"),
        t("clicks"),
        t("campaigns"),
        t("attributed"),
    );
    for topic in [&web, &mobile, &clicks, &campaigns, &output] {
        testkit::create_topic(&brokers, topic, 4)?;
    }
    // Ad i: one impression at base + i s (even ads on the web, odd in the app); a campaign
    // for all but every 50th; 1 in 4 clicked, most within a minute, every 5th of those 20
    // minutes later (too late to attribute).
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let base = now - 3 * 3_600_000;
    let loader = Loader::new(&brokers)?;
    for (topic, parity) in [(&web, 0), (&mobile, 1)] {
        loader.send_at(
            topic,
            (0..ADS).filter(|i| i % 2 == parity).map(|i| {
                (
                    None,
                    Some(format!("ad-{i}")),
                    format!("imp-{i}"),
                    Some(base + i * 1_000),
                )
            }),
        )?;
    }
    loader.send(
        &campaigns,
        (0..ADS).filter(|i| i % 50 != 0).map(|i| {
            (
                None,
                Some(format!("ad-{i}")),
                format!("campaign-{}", i % 10),
            )
        }),
    )?;
    let clicked: Vec<(i64, i64)> = (0..ADS)
        .filter(|i| i % 4 == 1)
        .map(|i| (i, if i % 20 == 1 { 1_200_000 } else { 30_000 }))
        .collect();
    let mut want: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, after) in &clicked {
        if *after <= 600_000 {
            let campaign = if i % 50 == 0 {
                "none".to_string()
            } else {
                format!("campaign-{}", i % 10)
            };
            want.insert(
                (format!("ad-{i}"), format!("imp-{i}|click-{i}|{campaign}")),
                1,
            );
        }
    }
    println!(
        "loaded {ADS} impressions on two topics and {} campaigns on {brokers}",
        ADS - ADS / 50
    );

    // The clicks follow once the campaigns table is in the pipeline's state.
    let feeder = {
        let (brokers, app, campaigns, clicks) = (
            brokers.clone(),
            app.clone(),
            campaigns.clone(),
            clicks.clone(),
        );
        let clicked = clicked.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let hop = format!("{app}-campaigns-merge");
            while !(testkit::caught_up(&brokers, &app, &campaigns).unwrap_or(false)
                && testkit::caught_up(&brokers, &app, &hop).unwrap_or(false))
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            Loader::new(&brokers)?.send_at(
                &clicks,
                clicked.iter().map(|(i, after)| {
                    let ts = base + i * 1_000 + after;
                    (
                        None,
                        Some(format!("user-{}", i % 97)),
                        format!("ad-{i}|click-{i}"),
                        Some(ts),
                    )
                }),
            )?;
            Ok(())
        })
    };
    let state_dir = std::env::temp_dir()
        .join("exactly-ad-attribution")
        .join(&app);
    let pipeline = || {
        attribution(
            [web.as_str(), mobile.as_str()],
            &clicks,
            &campaigns,
            &output,
        )
    };
    let topics_read = pipeline().topics_read(&app);
    let run = support::run_with_rebalances(
        |worker| {
            Ok(Config::new(&app, &brokers)
                .with_state_dir(state_dir.join(worker))
                .with_env()?)
        },
        pipeline,
        (brokers.as_str(), app.as_str(), clicks.as_str()),
        clicked.len() as u64,
        || {
            if !feeder.is_finished() {
                return Ok(false);
            }
            for topic in &topics_read {
                if !testkit::caught_up(&brokers, &app, topic)? {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    feeder.join().expect("the click feeder")?;
    println!(
        "attributed {} clicks in {:.1} s ({} forced rebalances, {} transactions)",
        clicked.len(),
        run.elapsed.as_secs_f64(),
        run.rebalances,
        run.stats.commits
    );

    let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in testkit::read_to_end(
        &brokers,
        &output,
        Isolation::ReadCommitted,
        Duration::from_secs(120),
    )? {
        let text = |b: &Option<Vec<u8>>| {
            String::from_utf8_lossy(b.as_deref().unwrap_or_default()).to_string()
        };
        *got.entry((text(&r.key), text(&r.value))).or_default() += 1;
    }
    let wrong = want.iter().filter(|(k, n)| got.get(*k) != Some(n)).count()
        + got.keys().filter(|k| !want.contains_key(*k)).count();
    let mut topics: std::collections::BTreeSet<String> =
        [&web, &mobile, &clicks, &campaigns, &output]
            .into_iter()
            .cloned()
            .collect();
    topics.extend(topics_read.iter().cloned());
    for (op, state) in [
        ("attributed-join", "left"),
        ("attributed-join", "right"),
        ("attributed-join", "timers"),
        ("attributed-join", "timers-stream-time"),
        ("campaigns-join", "table"),
    ] {
        topics.insert(exactly::framework::state::changelog::topic_name(
            &app, op, state,
        ));
    }
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    testkit::delete_topic(&brokers, &refs)?;
    let _ = std::fs::remove_dir_all(&state_dir);
    println!(
        "verified: {} attributed clicks of {}, {wrong} wrong",
        want.len(),
        clicked.len()
    );
    if wrong > 0 || want.is_empty() {
        bail!("the attributed clicks do not match the input");
    }
    Ok(())
}
