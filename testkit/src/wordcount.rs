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
    Pipeline::from_topic(input, Serde::string())
        .flat_map(|line: String| words(&line))
        .key_by(
            "words",
            |w: &String| w.clone(),
            Serde::string(),
            Serde::string(),
        )
        .count("count")
        .map(|n: u64| n.to_string())
        .to_topic(output, Serde::string(), Serde::string())
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
