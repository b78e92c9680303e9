//! What the bench runs: the input it generates, the pipeline under test, what the raw
//! baseline does for one record, and how an output is checked.
//!
//! # Adding a pipeline
//!
//! Implement [`Workload`] for it and add a [`PipelineKind`] variant that returns it from
//! [`PipelineKind::workload`] (and from [`PipelineKind::for_run`] for the framework
//! runs). [`Wordcount`] shows a stateful one: its input lines ([`line`]) are the copy's,
//! a record-by-record check is impossible, so `verify` checks every word's sequence of
//! counts (read_committed) against the counts computed from the input, and `input_id`
//! returns `None` (end-to-end latency is then not measured; throughput, pauses, commits
//! and RSS are).

use crate::fleet::Kind;
use clap::ValueEnum;
use exactly::prelude::*;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;

/// The pipelines the bench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineKind {
    /// Stateless: `Pipeline::copy(input, output)`.
    Copy,
    /// Stateful: the word count of `examples/wordcount.rs` (`flat_map` → `key_by`
    /// (repartition) → `count` → `map`).
    Wordcount,
}

impl PipelineKind {
    /// The pipeline's workload (what the framework runs).
    pub fn workload(self) -> Box<dyn Workload> {
        match self {
            PipelineKind::Copy => Box::new(Copy),
            PipelineKind::Wordcount => Box::new(Wordcount::default()),
        }
    }

    /// The workload of runs of `kind`. The raw baseline has no state store and no
    /// repartition hop, so for `wordcount` it stays a plain consume → produce of the lines
    /// ([`Copy`]): ExactlyOnce / raw is then the whole cost of the stateful pipeline.
    pub fn for_run(self, kind: Kind) -> Box<dyn Workload> {
        match kind {
            Kind::Raw => Box::new(Copy),
            Kind::Framework(_) => self.workload(),
        }
    }

    /// The `--records` default: the word count handles far fewer lines per second.
    pub fn default_records(self) -> u64 {
        match self {
            PipelineKind::Copy => 1_000_000,
            PipelineKind::Wordcount => 200_000,
        }
    }

    /// What the report says about the unit of records/s and the raw baseline.
    pub fn describe(self) -> &'static str {
        match self {
            PipelineKind::Copy => {
                "records/s: output records (copies of input records); raw baseline: the same \
                 copy with plain clients"
            }
            PipelineKind::Wordcount => {
                "records/s: input lines (the plot: output word counts divided by the mean \
                 words per line); raw baseline: a plain consume → produce of the lines (no \
                 split, no state, no repartition), so ExactlyOnce / raw is the whole cost of \
                 the stateful pipeline"
            }
        }
    }
}

/// One output record as the bench reads it back.
#[derive(Debug, Clone, Copy)]
pub struct OutRecord {
    pub partition: i32,
    /// Broker append time (the output topics use `LogAppendTime`), ms since the epoch.
    pub append_ms: i64,
    /// The input record this output record copies, if the workload can tell.
    pub id: Option<u64>,
    /// The running count this output record carries, if it is one: (key index, count).
    pub count: Option<(u32, u64)>,
}

/// The outcome of checking one output against the input (for a count per key, see
/// [`Wordcount`] for what each field counts).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Verification {
    /// Input records expected.
    pub expected: u64,
    /// Output records read (read_committed).
    pub output_records: u64,
    /// Input records with no output.
    pub lost: u64,
    /// Output records beyond the first per input record.
    pub duplicates: u64,
    /// Output records matching no input record (wrong value, key or partition).
    pub unexpected: u64,
    /// Partitions whose first copies are not in input order.
    pub out_of_order_partitions: Vec<i32>,
    /// The first few lost ids (to look for a pattern).
    pub lost_sample: Vec<u64>,
    /// Counting workloads: the first few keys whose last count is not the input's
    /// (`word: last L, expected E`).
    #[serde(default)]
    pub wrong_final_counts: Vec<String>,
}

impl Verification {
    /// Nothing lost, duplicated, unexpected, out of order or wrongly counted.
    pub fn is_exact(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.unexpected == 0
            && self.out_of_order_partitions.is_empty()
            && self.wrong_final_counts.is_empty()
    }
}

/// One record the raw baseline writes: (partition, key, value), borrowing the input.
pub type RawOut<'a> = (i32, Option<&'a [u8]>, Option<&'a [u8]>);

/// A pipeline under test, with its input, its raw-baseline twin and its checker.
pub trait Workload: Send + Sync {
    /// The pipeline run by in-process workers.
    fn pipeline(&self, input: &str, output: &str) -> Pipeline;
    /// The worker binary for `--kill-restart` (an example taking the copier's flags).
    fn process_binary(&self) -> &'static str;
    /// Its arguments beyond the copier's flags; `state_dir` is the member's own.
    fn process_args(&self, state_dir: &Path) -> Vec<OsString>;
    /// Topics the framework creates for the pipeline of group `group` (deleted with the
    /// run's topics).
    fn internal_topics(&self, _group: &str) -> Vec<String> {
        Vec::new()
    }
    /// Whether each output record copies one input record that `input_id` names. If so,
    /// throughput counts output records and end-to-end latency is measured; if not, the
    /// throughput counts the backlog's input records.
    fn copies_records(&self) -> bool;
    /// Input record `id`: (partition, key, value).
    fn input(&self, id: u64, partitions: i32) -> (i32, Vec<u8>, Vec<u8>);
    /// What the raw baseline writes for one input record: (partition, key, value) triples
    /// (by default the record itself, same partition).
    fn raw_process<'a>(
        &self,
        partition: i32,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        out: &mut Vec<RawOut<'a>>,
    ) {
        out.push((partition, key, value));
    }
    /// Which input record an output record comes from (`None`: not attributable, or
    /// malformed; `verify` decides).
    fn input_id(&self, partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<u64>;
    /// The running count an output record carries: (key index, count); `None` for a
    /// copy, or a malformed record.
    fn count_of(&self, _key: Option<&[u8]>, _value: Option<&[u8]>) -> Option<(u32, u64)> {
        None
    }
    /// Tells output records caused by the backlog (input ids `0..backlog`) from those of
    /// the live phase.
    fn backlog_filter(&self, backlog: u64) -> Box<dyn Fn(&OutRecord) -> bool>;
    /// Checks an output (sorted by partition, then offset) against input ids `0..ids`.
    fn verify(&self, ids: u64, partitions: i32, output: &[OutRecord]) -> Verification;
}

/// Words of the generated lines (a few non-ASCII ones: the lines are UTF-8).
const WORDS: [&str; 32] = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "kafka",
    "stream",
    "exactly",
    "once",
    "record",
    "offset",
    "commit",
    "partition",
    "broker",
    "topic",
    "café",
    "naïve",
    "zürich",
    "smörgåsbord",
    "über",
    "rebalance",
    "worker",
    "group",
    "epoch",
    "fence",
    "abort",
    "replay",
    "state",
    "window",
];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The words of input record `id`, as indices into [`WORDS`]: 3 to 6, deterministic.
fn line_words(id: u64) -> impl Iterator<Item = usize> {
    let mut h = splitmix(id);
    let n = 3 + (h % 4) as usize;
    (0..n).map(move |_| {
        h = splitmix(h);
        (h % WORDS.len() as u64) as usize
    })
}

/// The value of input record `id`: its [`line_words`], space-separated.
pub fn line(id: u64) -> String {
    let mut s = String::with_capacity(40);
    for (i, w) in line_words(id).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[w]);
    }
    s
}

/// The stateless copy: key = the record id (decimal), value = [`line`], same partition.
pub struct Copy;

impl Copy {
    fn parse_id(key: &[u8]) -> Option<u64> {
        std::str::from_utf8(key).ok()?.parse().ok()
    }
}

impl Workload for Copy {
    fn pipeline(&self, input: &str, output: &str) -> Pipeline {
        Pipeline::copy(input, output)
    }

    fn process_binary(&self) -> &'static str {
        "copier"
    }

    fn process_args(&self, _state_dir: &Path) -> Vec<OsString> {
        Vec::new()
    }

    fn copies_records(&self) -> bool {
        true
    }

    fn input(&self, id: u64, partitions: i32) -> (i32, Vec<u8>, Vec<u8>) {
        (
            (id % partitions as u64) as i32,
            id.to_string().into_bytes(),
            line(id).into_bytes(),
        )
    }

    fn input_id(&self, partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<u64> {
        let id = Self::parse_id(key?)?;
        let ok = value == Some(line(id).as_bytes()) && partition >= 0;
        ok.then_some(id)
    }

    fn backlog_filter(&self, backlog: u64) -> Box<dyn Fn(&OutRecord) -> bool> {
        Box::new(move |r| r.id.is_none_or(|id| id < backlog))
    }

    fn verify(&self, ids: u64, partitions: i32, output: &[OutRecord]) -> Verification {
        let mut v = Verification {
            expected: ids,
            output_records: output.len() as u64,
            ..Default::default()
        };
        let mut counts = vec![0u32; ids as usize];
        let mut last_first: Vec<Option<u64>> = vec![None; partitions.max(0) as usize];
        let mut bad_order: HashSet<i32> = HashSet::new();
        for r in output {
            let id = match r.id {
                Some(id) if id < ids && (id % partitions as u64) as i32 == r.partition => id,
                _ => {
                    v.unexpected += 1;
                    continue;
                }
            };
            let c = &mut counts[id as usize];
            *c += 1;
            if *c > 1 {
                v.duplicates += 1;
                continue;
            }
            // First copies must follow input order within a partition.
            let slot = &mut last_first[r.partition as usize];
            if slot.is_some_and(|prev| prev > id) {
                bad_order.insert(r.partition);
            }
            *slot = Some(id);
        }
        v.lost = counts.iter().filter(|c| **c == 0).count() as u64;
        v.lost_sample = (0..ids)
            .filter(|id| counts[*id as usize] == 0)
            .take(10)
            .collect();
        v.out_of_order_partitions = bad_order.into_iter().collect();
        v.out_of_order_partitions.sort_unstable();
        v
    }
}

/// Name of the word count's `key_by` (its repartition topic is `{group}-words-repartition`).
const KEY_BY: &str = "words";
/// Name of the word count's `count` (its changelog is named after it).
const COUNT: &str = "count";

/// How many times each word of [`WORDS`] occurs in input records `0..ids`.
fn word_counts(ids: u64) -> [u64; WORDS.len()] {
    let mut counts = [0u64; WORDS.len()];
    for id in 0..ids {
        for w in line_words(id) {
            counts[w] += 1;
        }
    }
    counts
}

/// The stateful word count of `examples/wordcount.rs` on the copy's input: its output is
/// `word → count so far` (decimal), once per word and commit cycle (the record cache),
/// partitioned by word.
///
/// Its `verify` maps the checks onto [`Verification`] per word, the sequence of counts in
/// output order (all of a word's records are in one partition: the sink partitions by
/// key): `expected` is the input's words; `lost` how far a word's last count stays below n
/// (n: the word's occurrences in the input); `duplicates` a count that does not strictly
/// increase on the one before, plus how far a last count goes above n (a word counted
/// twice); `unexpected` a record that is no (known word, count ≥ 1), or a word in a second
/// partition; `out_of_order_partitions` where a word's counts went down; and
/// `wrong_final_counts` the words whose last count is not n. Exact means every word's
/// counts strictly increase and end at n: nothing replayed into the state or the output.
pub struct Wordcount {
    /// Word → its index in [`WORDS`].
    index: HashMap<&'static str, u32>,
}

impl Default for Wordcount {
    fn default() -> Wordcount {
        let index = WORDS
            .iter()
            .enumerate()
            .map(|(i, w)| (*w, i as u32))
            .collect();
        Wordcount { index }
    }
}

impl Workload for Wordcount {
    fn pipeline(&self, input: &str, output: &str) -> Pipeline {
        // The word count of the examples and tests: key_by `words`, count `count`.
        exactly_testkit::wordcount::pipeline(input, output)
    }

    fn process_binary(&self) -> &'static str {
        "wordcount"
    }

    fn process_args(&self, state_dir: &Path) -> Vec<OsString> {
        vec![
            "--member".into(),
            "--state-dir".into(),
            state_dir.as_os_str().to_owned(),
        ]
    }

    fn internal_topics(&self, group: &str) -> Vec<String> {
        vec![
            format!("{group}-{KEY_BY}-repartition"),
            exactly::framework::state::changelog::topic_name(group, COUNT, "counts"),
        ]
    }

    fn copies_records(&self) -> bool {
        false
    }

    fn input(&self, id: u64, partitions: i32) -> (i32, Vec<u8>, Vec<u8>) {
        Copy.input(id, partitions)
    }

    fn input_id(&self, _: i32, _: Option<&[u8]>, _: Option<&[u8]>) -> Option<u64> {
        None
    }

    fn count_of(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(u32, u64)> {
        let word = self.index.get(std::str::from_utf8(key?).ok()?)?;
        let count = std::str::from_utf8(value?).ok()?.parse().ok()?;
        Some((*word, count))
    }

    fn backlog_filter(&self, backlog: u64) -> Box<dyn Fn(&OutRecord) -> bool> {
        let counts = word_counts(backlog);
        Box::new(move |r| r.count.is_none_or(|(w, n)| n <= counts[w as usize]))
    }

    fn verify(&self, ids: u64, _partitions: i32, output: &[OutRecord]) -> Verification {
        let expected = word_counts(ids);
        let mut v = Verification {
            expected: expected.iter().sum(),
            output_records: output.len() as u64,
            ..Default::default()
        };
        /// One word's output so far.
        struct Seen {
            partition: Option<i32>,
            last: Option<u64>,
        }
        let mut seen: Vec<Seen> = expected
            .iter()
            .map(|_| Seen {
                partition: None,
                last: None,
            })
            .collect();
        let mut bad_order: HashSet<i32> = HashSet::new();
        for r in output {
            let Some((w, n)) = r.count.filter(|(_, n)| *n >= 1) else {
                v.unexpected += 1;
                continue;
            };
            let s = &mut seen[w as usize];
            if *s.partition.get_or_insert(r.partition) != r.partition {
                v.unexpected += 1;
                continue;
            }
            if let Some(last) = s.last {
                if n <= last {
                    v.duplicates += 1;
                    if n < last {
                        bad_order.insert(r.partition);
                    }
                }
            }
            s.last = Some(s.last.map_or(n, |l| l.max(n)));
        }
        for (w, s) in seen.iter().enumerate() {
            let last = s.last.unwrap_or(0);
            v.lost += expected[w].saturating_sub(last);
            v.duplicates += last.saturating_sub(expected[w]);
            if last != expected[w] && v.wrong_final_counts.len() < 10 {
                v.wrong_final_counts.push(format!(
                    "{}: last {}, expected {}",
                    WORDS[w],
                    s.last.map_or("none".into(), |n| n.to_string()),
                    expected[w]
                ));
            }
        }
        v.out_of_order_partitions = bad_order.into_iter().collect();
        v.out_of_order_partitions.sort_unstable();
        v
    }
}
