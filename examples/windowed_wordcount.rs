//! # windowed_wordcount — words per minute of event time, exactly once
//!
//! With no arguments: starts the local broker (unless `KAFKA_BROKERS` is set), loads
//! `data/kjv.txt` into an input topic of 4 partitions, one line every 100 ms of *event
//! time* (record timestamps, ending now), and runs two workers of the pipeline below with
//! forced rebalances. The output topic gets `word@HH:MM → count` for each one-minute
//! tumbling window, updated as the window fills; records that arrive after their window
//! closed (a task's watermark is its stream time minus `--out-of-orderness-s`, by default
//! an hour: the input is a backlog, see that flag) go to a `late` topic, in the same
//! transaction.
//!
//! Then it checks, for every (word, minute), that the window's last count plus that
//! minute's late records of the word equal a direct count of the corpus: every word
//! counted exactly once, in its window or as late. It prints the busiest minute's top 5
//! and `verified: N word-minutes, 0 wrong`, and exits non-zero on any difference.
//!
//! ```text
//! cargo run --release --example windowed_wordcount
//! cargo run --release --example windowed_wordcount -- --brokers host:9092
//! ```

mod support;

use anyhow::{bail, Context as _};
use clap::Parser;
use exactly::operators::text::words;
use exactly::operators::{Windowed, Windows};
use exactly::prelude::*;
use exactly_testkit::{self as testkit, Isolation, Loader};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MINUTE: i64 = 60_000;

/// The pipeline: words, re-keyed by word, counted per minute of event time.
fn windowed_wordcount(
    input: &str,
    output: &str,
    late: &str,
    out_of_orderness: Duration,
) -> Pipeline {
    Pipeline::from_topic(input, Serde::string())
        .flat_map(|line: String| words(&line))
        .key_by(
            "words",
            |w: &String| w.clone(),
            Serde::string(),
            Serde::string(),
        )
        .window_count(
            "per-minute",
            Windows::tumbling(Duration::from_secs(60))
                .out_of_orderness(out_of_orderness)
                .emit_updates()
                .late_records_to(Sink::topic(late, Serde::string(), Serde::string())),
        )
        .map_key(|r: &Record<Windowed<String>, u64>| r.key.as_ref().map(window_key))
        .map(|n: u64| n.to_string())
        .to_topic(output, Serde::string(), Serde::string())
}

/// `word@HH:MM` (UTC) of a window.
fn window_key(w: &Windowed<String>) -> String {
    let minute = w.start.div_euclid(MINUTE).rem_euclid(24 * 60);
    format!(
        "{}@{:02}:{:02}",
        w.key.as_deref().unwrap_or(""),
        minute / 60,
        minute % 60
    )
}

#[derive(Parser, Debug)]
#[command(about = "Count words per minute of event time exactly once, verify the result.")]
struct Args {
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// The text to count, one record per line.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/kjv.txt"))]
    corpus: PathBuf,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Event time between two lines, ms.
    #[arg(long, default_value_t = 100)]
    line_every_ms: i64,
    /// How far behind its stream time a task's watermark stays, seconds. The default covers
    /// the whole corpus: the input is a backlog, and behind the repartition each partition
    /// mixes words from four upstream partitions consumed in large batches, far apart in
    /// event time. Try 10 to see windows close early and many records counted as late.
    #[arg(long, default_value_t = 3600)]
    out_of_orderness_s: u64,
    /// Keep the topics and state afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing();
    let args = Args::parse();
    let brokers = support::brokers(&args.brokers)?;
    let text = std::fs::read_to_string(&args.corpus)
        .with_context(|| format!("reading {}", args.corpus.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // Event time: line i at `first + i * line_every_ms`, the last line now.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let first = now - lines.len() as i64 * args.line_every_ms;
    let at = |i: usize| first + i as i64 * args.line_every_ms;
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut total_words = 0u64;
    for (i, line) in lines.iter().enumerate() {
        let minute = at(i) - at(i).rem_euclid(MINUTE);
        for w in words(line) {
            let key = window_key(&Windowed {
                key: Some(w),
                start: minute,
                end: minute + MINUTE,
            });
            *expected.entry(key).or_default() += 1;
            total_words += 1;
        }
    }

    let app = testkit::unique_name("windowed-wordcount");
    let (input, output, late) = (
        format!("{app}-lines"),
        format!("{app}-counts"),
        format!("{app}-late"),
    );
    let n = args.partitions;
    for t in [&input, &output, &late] {
        testkit::create_topic(&brokers, t, n)?;
    }
    Loader::new(&brokers)?.send_at(
        &input,
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (Some(i as i32 % n), None::<&str>, *l, Some(at(i)))),
    )?;
    println!(
        "loaded {} lines ({total_words} words, {} word-minutes) into {input} on {brokers}",
        lines.len(),
        expected.len()
    );

    let state_dir = std::env::temp_dir()
        .join("exactly-windowed-wordcount")
        .join(&app);
    let repartition = format!("{app}-words-repartition");
    let run = support::run_with_rebalances(
        |worker| {
            Ok(Config::new(&app, &brokers)
                .with_state_dir(state_dir.join(worker))
                .with_env()?)
        },
        || {
            windowed_wordcount(
                &input,
                &output,
                &late,
                Duration::from_secs(args.out_of_orderness_s),
            )
        },
        (brokers.as_str(), app.as_str(), input.as_str()),
        lines.len() as u64,
        || {
            Ok(testkit::caught_up(&brokers, &app, &input)?
                && testkit::caught_up(&brokers, &app, &repartition)?)
        },
    )
    .await?;
    println!(
        "counted {total_words} words in {:.1} s ({:.0} words/s; {} forced rebalances, {} transactions)",
        run.elapsed.as_secs_f64(),
        total_words as f64 / run.elapsed.as_secs_f64(),
        run.rebalances,
        run.stats.commits,
    );

    let read = |topic: &str| {
        testkit::read_to_end(
            &brokers,
            topic,
            Isolation::ReadCommitted,
            Duration::from_secs(120),
        )
    };
    let text =
        |b: &Option<Vec<u8>>| String::from_utf8_lossy(b.as_deref().unwrap_or_default()).to_string();
    // The last count of each window, plus the late records of each (word, minute).
    let mut counted: HashMap<String, u64> = HashMap::new();
    for r in read(&output)? {
        counted.insert(text(&r.key), text(&r.value).parse()?);
    }
    let late_records = read(&late)?;
    for r in &late_records {
        let ts = r.timestamp.context("a late record without timestamp")?;
        let minute = ts - ts.rem_euclid(MINUTE);
        let key = window_key(&Windowed {
            key: Some(text(&r.key)),
            start: minute,
            end: minute + MINUTE,
        });
        *counted.entry(key).or_default() += 1;
    }
    // The busiest minute.
    let mut per_minute: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for (k, n) in &expected {
        if let Some((w, m)) = k.split_once('@') {
            per_minute.entry(m).or_default().push((w, *n));
        }
    }
    if let Some((minute, mut top)) = per_minute
        .into_iter()
        .max_by_key(|(_, ws)| ws.iter().map(|(_, n)| n).sum::<u64>())
    {
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        println!("busiest minute {minute} UTC, top 5:");
        for (w, n) in top.iter().take(5) {
            println!("  {w:>8} {n}");
        }
    }
    println!("{} late records (sent to {late})", late_records.len());
    let wrong: Vec<(&String, u64, Option<&u64>)> = expected
        .iter()
        .filter(|(k, n)| counted.get(*k) != Some(n))
        .map(|(k, n)| (k, *n, counted.get(k)))
        .collect();
    let extra = counted
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .count();
    if !args.keep {
        let changelogs = ["windows", "stream-time"]
            .map(|s| exactly::framework::state::changelog::topic_name(&app, "per-minute", s));
        testkit::delete_topic(
            &brokers,
            &[
                &input,
                &output,
                &late,
                &repartition,
                &changelogs[0],
                &changelogs[1],
            ],
        )?;
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    println!(
        "verified: {} word-minutes, {} wrong",
        expected.len(),
        wrong.len() + extra
    );
    if !wrong.is_empty() || extra > 0 {
        for (k, want, got) in wrong.iter().take(10) {
            eprintln!("  {k}: expected {want}, counted {got:?}");
        }
        bail!("the output does not match the corpus");
    }
    Ok(())
}
