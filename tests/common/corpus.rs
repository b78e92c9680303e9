//! A word-count run on the KJV: its topics, group and expected counts, shared by the tests
//! of the repartition hop, interactive queries and standbys.

use super::copy_check::wait_until_committed;
use exactly_testkit::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Generous deadline for reading a topic to its end.
const READ: Duration = Duration::from_secs(60);

/// Input and output topics of 4 partitions, a unique group, and the KJV's first lines.
pub struct Corpus {
    pub b: String,
    pub input: String,
    pub output: String,
    pub group: String,
    /// The lines of the corpus (loaded or not: see [`Corpus::load`]).
    pub lines: Vec<&'static str>,
}

impl Corpus {
    /// Topics and a group for the first `lines` lines; nothing loaded yet.
    pub fn new(name: &str, lines: usize) -> Corpus {
        let b = super::brokers();
        let input = super::new_topic(&b, &format!("{name}-lines"), 4);
        let output = super::new_topic(&b, &format!("{name}-counts"), 4);
        Corpus {
            group: unique_name(name),
            b,
            input,
            output,
            lines: wordcount::KJV.lines().take(lines).collect(),
        }
    }

    /// [`Corpus::new`] with every line loaded.
    pub fn load(name: &str, lines: usize) -> Corpus {
        let c = Corpus::new(name, lines);
        c.send(&c.lines);
        c
    }

    /// Writes `lines` to the input, round-robin over its partitions.
    pub fn send(&self, lines: &[&str]) {
        produce(
            &self.b,
            &self.input,
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| (Some(i as i32 % 4), None::<&str>, *l)),
        )
        .unwrap();
    }

    /// Each word's number of occurrences in the corpus.
    pub fn expected(&self) -> BTreeMap<String, u64> {
        wordcount::expected_counts(self.lines.iter().copied())
    }

    /// The repartition hop's topic.
    pub fn repartition(&self) -> String {
        format!("{}-words-repartition", self.group)
    }

    /// The counts' changelog topic.
    pub fn changelog(&self) -> String {
        exactly::framework::state::changelog::topic_name(&self.group, "count", "counts")
    }

    /// Waits until the group has committed the end of the input and of the hop.
    pub fn wait_done(&self) {
        wait_until_committed(&self.b, &self.group, &self.input, Duration::from_secs(180));
        wait_until_committed(
            &self.b,
            &self.group,
            &self.repartition(),
            Duration::from_secs(180),
        );
    }

    /// The output as a `read_committed` reader sees it.
    pub fn committed_output(&self) -> Vec<ReadRecord> {
        read_to_end(&self.b, &self.output, Isolation::ReadCommitted, READ).unwrap()
    }

    /// Every count each word had in the committed output.
    pub fn committed_counts(&self) -> BTreeMap<String, BTreeSet<u64>> {
        let mut counts: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for r in self.committed_output() {
            let word = String::from_utf8(r.key.unwrap()).unwrap();
            let n = String::from_utf8(r.value.unwrap())
                .unwrap()
                .parse()
                .unwrap();
            counts.entry(word).or_default().insert(n);
        }
        counts
    }

    /// Each word's counts strictly increase and end at its number of occurrences
    /// (`wordcount::CountCheck`).
    pub fn assert_exact(&self) {
        let expected = self.expected();
        let check = wordcount::CountCheck::of(&self.committed_output(), &expected);
        assert!(check.is_exact(), "{check}");
        eprintln!("{check} ({} distinct words)", expected.len());
    }

    /// Deletes the run's topics, internal ones included.
    pub fn cleanup(&self) {
        let _ = delete_topic(
            &self.b,
            &[
                &self.input,
                &self.output,
                &self.repartition(),
                &self.changelog(),
            ],
        );
    }
}
