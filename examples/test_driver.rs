//! # test_driver — a whole pipeline in memory, no broker
//!
//! Runs the word count (words → `key_by` hop → `count`) on `testing::TestDriver`: the same
//! operator chains a worker builds, with in-memory topics (the hop included) and one commit
//! per input record. Prints the top words and `verified: N words, 0 wrong` against a direct
//! count; exits non-zero on any difference. This is how a pipeline's own tests run it.
//!
//! ```text
//! cargo run --release --example test_driver
//! ```

use exactly::framework::testing::TestDriver;
use exactly::framework::Serde;
use exactly_testkit::wordcount;
use std::collections::BTreeMap;

fn main() -> anyhow::Result<()> {
    // The project's word count (`exactly_testkit::wordcount::pipeline`): words, a
    // `key_by` hop, a count per word.
    let mut driver =
        TestDriver::new(wordcount::pipeline("lines", "counts")).with_default_partitions(4);
    let lines: Vec<&str> = wordcount::KJV
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3_000)
        .collect();
    for (i, line) in lines.iter().enumerate() {
        driver.pipe("lines", None, Some(line.as_bytes()), i as i64)?;
    }
    let want = wordcount::expected_counts(lines.iter().copied());
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (word, n) in driver
        .read("counts", &Serde::string(), &Serde::string())
        .map_err(anyhow::Error::msg)?
    {
        last.insert(word.unwrap_or_default(), n.parse()?);
    }
    let mut top: Vec<(&String, &u64)> = last.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!(
        "{} lines in memory: {} count records, {} records through the hop; top 5: {:?}",
        lines.len(),
        driver.records("counts").len(),
        driver.records("test-words-repartition").len(),
        &top[..5.min(top.len())]
    );
    let wrong = want.iter().filter(|(w, n)| last.get(*w) != Some(n)).count()
        + last.keys().filter(|w| !want.contains_key(*w)).count();
    println!("verified: {} words, {wrong} wrong", want.len());
    if wrong > 0 {
        anyhow::bail!("the driver's counts differ from a direct count");
    }
    Ok(())
}
