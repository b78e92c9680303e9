//! The word count — the project's flagship pipeline — as the examples, tests and benches run
//! it, and the counts a corpus must give.

use exactly_framework::{Pipeline, Serde};
use exactly_operators::text::words;
use exactly_operators::StreamExt;
use std::collections::BTreeMap;

/// The King James Bible (public domain), the corpus the word counts read: `data/kjv.txt`.
pub const KJV: &str = include_str!("../../data/kjv.txt");

/// Lines → words (through the repartition topic `{application_id}-words-repartition`) →
/// a count per word (operator `count`, state `counts`) → `word → count so far`, both
/// UTF-8 strings.
pub fn pipeline(input: &str, output: &str) -> Pipeline {
    words_by_word(input)
        .count("count")
        .map(|n: u64| n.to_string())
        .to_topic(output, Serde::string(), Serde::string())
}

/// As [`pipeline`], emitting every update of a count (1, 2, .. n for each word) instead of
/// the last one of each commit: an output that does not depend on commit timing, for
/// comparisons with the test driver (`chaos::check`).
pub fn pipeline_every_update(input: &str, output: &str) -> Pipeline {
    words_by_word(input)
        .count("count")
        .emit_every_update()
        .map(|n: u64| n.to_string())
        .to_topic(output, Serde::string(), Serde::string())
}

/// Lines → words, keyed by word before the repartition.
fn words_by_word(input: &str) -> exactly_operators::KeyBy<String, String> {
    Pipeline::from_topic(input, Serde::string())
        .flat_map(|line: String| words(&line))
        .key_by(
            "words",
            |w: &String| w.clone(),
            Serde::string(),
            Serde::string(),
        )
}

/// How often each word occurs in `lines`, as the pipeline splits them.
pub fn expected_counts<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        for w in words(line) {
            *counts.entry(w).or_default() += 1;
        }
    }
    counts
}

/// What a word count's `read_committed` output says next to the counts it must give.
///
/// The word count emits a word at most once per commit cycle (its record cache), so each
/// word's counts strictly increase — a replayed or duplicated cycle would repeat or lower
/// one — and its last count is its number of occurrences — a lost record would leave it
/// lower, a duplicated one higher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountCheck {
    /// Count records read.
    pub updates: usize,
    /// Words whose last count is not their number of occurrences (word, expected, last).
    pub wrong: Vec<(String, u64, Option<u64>)>,
    /// Count records not above the word's previous count: a duplicate.
    pub not_increasing: usize,
    /// Words in the output that no input line has.
    pub unexpected: usize,
}

impl CountCheck {
    /// Checks `records` (key: word, value: count, UTF-8) against `expected`.
    ///
    /// # Panics
    /// When a record is not a word and a count.
    pub fn of(records: &[crate::ReadRecord], expected: &BTreeMap<String, u64>) -> CountCheck {
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let mut check = CountCheck {
            updates: records.len(),
            ..CountCheck::default()
        };
        for r in records {
            let word = String::from_utf8(r.key.clone().expect("a count without a word"))
                .expect("a word that is not UTF-8");
            let n: u64 = String::from_utf8(r.value.clone().expect("a word without a count"))
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("a count that is not a number");
            if let Some(prev) = last.insert(word, n) {
                if n <= prev {
                    check.not_increasing += 1;
                }
            }
        }
        for (w, n) in expected {
            let got = last.get(w).copied();
            if got != Some(*n) {
                check.wrong.push((w.clone(), *n, got));
            }
        }
        check.unexpected = last.keys().filter(|w| !expected.contains_key(*w)).count();
        check
    }

    /// Every word counted once per occurrence, no count repeated or lowered.
    pub fn is_exact(&self) -> bool {
        self.wrong.is_empty() && self.not_increasing == 0 && self.unexpected == 0
    }
}

impl std::fmt::Display for CountCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} count records, {} wrong final counts (word, expected, last: {:?}), {} counts not above the previous one, {} unexpected words",
            self.updates,
            self.wrong.len(),
            &self.wrong[..self.wrong.len().min(5)],
            self.not_increasing,
            self.unexpected
        )
    }
}
