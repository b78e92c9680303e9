//! What the bench runs: the input it generates, the pipeline under test, what the raw
//! baseline does for one record, and how an output is checked.
//!
//! # Adding a pipeline (wordcount)
//!
//! Implement [`Workload`] for it and add a [`PipelineKind`] variant that returns it from
//! [`PipelineKind::workload`]. The input lines ([`line`]) are already a few words each, so
//! a word count can reuse them. A stateful pipeline cannot be verified record by record:
//! its `verify` compares the final count of every word (read_committed, last value per
//! key) with the counts computed from the input, and `input_id` returns `None` (end-to-end
//! latency is then not measured; throughput, pauses, commits and RSS are).

use clap::ValueEnum;
use exactly::Pipeline;
use std::collections::HashSet;

/// The pipelines the bench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineKind {
    /// Stateless: `Pipeline::copy(input, output)`.
    Copy,
    /// Stateful word count (not implemented yet: the operators are not there).
    Wordcount,
}

impl PipelineKind {
    pub fn workload(self) -> anyhow::Result<Box<dyn Workload>> {
        match self {
            PipelineKind::Copy => Ok(Box::new(Copy)),
            PipelineKind::Wordcount => anyhow::bail!(
                "the wordcount pipeline is not implemented yet (stateful operators have not \
                 landed); see \"Adding a pipeline\" in docs/benchmarks.md"
            ),
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
}

/// The outcome of checking one output against the input.
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
}

impl Verification {
    pub fn is_exact(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.unexpected == 0
            && self.out_of_order_partitions.is_empty()
    }
}

/// One record the raw baseline writes: (partition, key, value), borrowing the input.
pub type RawOut<'a> = (i32, Option<&'a [u8]>, Option<&'a [u8]>);

/// A pipeline under test, with its input, its raw-baseline twin and its checker.
pub trait Workload: Send + Sync {
    /// The pipeline run by in-process workers.
    fn pipeline(&self, input: &str, output: &str) -> Pipeline;
    /// The worker binary for `--kill-restart` (it must take the copier's CLI).
    fn process_binary(&self) -> &'static str;
    /// Input record `id`: (partition, key, value).
    fn input(&self, id: u64, partitions: i32) -> (i32, Vec<u8>, Vec<u8>);
    /// What the raw baseline writes for one input record: (partition, key, value) triples.
    fn raw_process<'a>(
        &self,
        partition: i32,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        out: &mut Vec<RawOut<'a>>,
    );
    /// Which input record an output record comes from (`None`: not attributable, or
    /// malformed; `verify` decides).
    fn input_id(&self, partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<u64>;
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

/// The value of input record `id`: 3 to 6 words, deterministic.
pub fn line(id: u64) -> String {
    let mut h = splitmix(id);
    let n = 3 + (h % 4) as usize;
    let mut s = String::with_capacity(40);
    for i in 0..n {
        h = splitmix(h);
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[(h % WORDS.len() as u64) as usize]);
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

    fn input(&self, id: u64, partitions: i32) -> (i32, Vec<u8>, Vec<u8>) {
        (
            (id % partitions as u64) as i32,
            id.to_string().into_bytes(),
            line(id).into_bytes(),
        )
    }

    fn raw_process<'a>(
        &self,
        partition: i32,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        out: &mut Vec<RawOut<'a>>,
    ) {
        out.push((partition, key, value));
    }

    fn input_id(&self, partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<u64> {
        let id = Self::parse_id(key?)?;
        let ok = value == Some(line(id).as_bytes()) && partition >= 0;
        ok.then_some(id)
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
