//! Several inputs: [`Pipeline::from_topics`] and [`Stream::merge`].
//!
//! Merged streams meet in one task per partition number: each side writes its records, in
//! the cycle's transaction, to an internal topic `{application_id}-{name}-merge`, each record
//! to the partition number it was read from; the merged stream's tasks are that topic's
//! partitions. So partition `p` of every input is processed by one task, with one state —
//! Kafka Streams' co-partitioned task — whichever worker the group gave each input
//! partition to. Inputs must have equal partition counts (checked at start).

use super::{Pipeline, Stream};
use crate::codec::Codec;
use crate::producer::{Partitioning, Sink};
use crate::topics::TopicName;
use std::sync::Arc;

impl Pipeline {
    /// Reads several topics of one type as one stream: partition `p` of each is processed
    /// by the same task (they must have equal partition counts; checked at start). The
    /// records meet through the internal topic `{application_id}-{t1}-{t2}...-merge`
    /// (decoded at their source, so a bad record is named by its own topic).
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    ///
    /// let pipeline = Pipeline::from_topics(["clicks-web", "clicks-app"], Serde::string(), Serde::string())
    ///     .to_topic("clicks", Serde::string(), Serde::string());
    /// assert_eq!(pipeline.internal_topics(), ["clicks-web-clicks-app-merge"]);
    /// ```
    ///
    /// # Panics
    /// When `topics` is empty.
    pub fn from_topics<K: Send + 'static, V: Send + 'static>(
        topics: impl IntoIterator<Item = impl Into<String>>,
        key: impl Codec<K> + Clone,
        value: impl Codec<V> + Clone,
    ) -> Stream<K, V> {
        let topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        assert!(!topics.is_empty(), "from_topics needs at least one topic");
        let mut streams = topics
            .iter()
            .map(|t| Pipeline::from_topic_with_key(t.clone(), key.clone(), value.clone()));
        let first = streams.next().expect("checked above");
        if topics.len() == 1 {
            return first;
        }
        let name: String = topics
            .join("-")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        first.merge_all(
            &name,
            streams.collect(),
            key,
            value,
            Partitioning::SameAsInput,
        )
    }
}

impl<K: Send + 'static, V: Send + 'static> Stream<K, V> {
    /// Merges `other` into this stream: from here on, records of both are processed by one
    /// task per partition number (partition `p` of this stream's input and of `other`'s),
    /// through the internal topic `{application_id}-{name}-merge`, written in the same
    /// transaction as everything else. Records keep their key and partition: to meet by a
    /// new key, `repartition` (or `key_by`) after the merge. `key` and `value` encode the
    /// hop.
    ///
    /// # Panics
    /// When `name` or an operator name is used by both streams.
    pub fn merge(
        self,
        name: impl Into<String>,
        other: Stream<K, V>,
        key: impl Codec<K> + Clone,
        value: impl Codec<V> + Clone,
    ) -> Stream<K, V> {
        self.merge_all(
            &name.into(),
            vec![other],
            key,
            value,
            Partitioning::SameAsInput,
        )
    }

    /// As [`merge`](Self::merge), and re-partitioned by key in the same hop: records of
    /// both streams with equal keys meet in one task whatever partitions they came from (a
    /// stream–stream join's two sides).
    ///
    /// # Panics
    /// As [`merge`](Self::merge).
    pub fn merge_by_key(
        self,
        name: impl Into<String>,
        other: Stream<K, V>,
        key: impl Codec<K> + Clone,
        value: impl Codec<V> + Clone,
    ) -> Stream<K, V> {
        self.merge_all(&name.into(), vec![other], key, value, Partitioning::ByKey)
    }

    fn merge_all(
        self,
        name: &str,
        others: Vec<Stream<K, V>>,
        key: impl Codec<K> + Clone,
        value: impl Codec<V> + Clone,
        partitioning: Partitioning,
    ) -> Stream<K, V> {
        let internal = TopicName::Internal(format!("{name}-merge"));
        let sink = || Sink {
            topic: internal.clone(),
            key: Arc::new(key.clone()) as Arc<dyn Codec<K>>,
            value: Arc::new(value.clone()) as Arc<dyn Codec<V>>,
            partitioning,
        };
        let first_input = self.input.clone();
        let mut operators = self.operators.clone();
        let mut side_topics = self.side_topics.clone();
        let mut stages = self.to(sink()).stages;
        for other in others {
            for op in &other.operators {
                assert!(
                    !operators.contains(op),
                    "operator name `{op}` is used twice in this pipeline; names must be unique"
                );
                operators.push(op.clone());
            }
            for t in &other.side_topics {
                if !side_topics.contains(t) {
                    side_topics.push(t.clone());
                }
            }
            let other_input = other.input.clone();
            let mut done = other.to(sink()).stages;
            if partitioning == Partitioning::SameAsInput {
                if let (TopicName::External(_), TopicName::External(_)) =
                    (&first_input, &other_input)
                {
                    for stage in done.iter_mut().filter(|s| s.input == other_input) {
                        stage.copartitioned_with = Some(first_input.clone());
                    }
                }
            }
            stages.extend(done);
        }
        assert!(
            !operators.iter().any(|o| o == name),
            "operator name `{name}` is used twice in this pipeline; names must be unique"
        );
        operators.push(name.to_string());
        Stream::source(internal, stages, operators, side_topics, key, value)
    }
}
