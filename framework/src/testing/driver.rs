//! A whole pipeline in memory: Kafka Streams' `TopologyTestDriver`, for Rust.
//!
//! [`TestDriver`] runs every stage of a [`Pipeline`] — its operators, `key_by` hops, state,
//! windows, timers, side outputs, tees, bad-record policy — with in-memory topics instead of
//! a broker, through the same operator chains a worker builds. Each input record is one
//! commit cycle: it is processed, every task it reached passes the commit barrier (record
//! caches emit, state commits), and what it wrote to an internal topic is then processed by
//! the next stage the same way — so the output is what a worker that committed after every
//! record would make visible.

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::operator::TEST_APPLICATION_ID;
use crate::pipeline::node::{InputMessage, RawNode};
use crate::pipeline::{divert_record, BadRecords, BuildTask, Pipeline, TaskSetup};
use crate::poison::Poison;
use crate::producer::{Encoded, Output};
use crate::record::{Header, TaskId};
use crate::state::queryable::partition_of;
use rdkafka::message::Headers;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One record of an in-memory topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Key bytes (`None`: no key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Ms since the epoch.
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl InputMessage for TestRecord {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn payload(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn headers(&self) -> Vec<Header> {
        self.headers.clone()
    }
}

/// Records the chains sent, until the driver places them in their topics.
#[derive(Default)]
struct Sent(Mutex<Vec<(String, TestRecord)>>);

impl Output for Sent {
    fn send_encoded(&self, topic: &str, e: Encoded<'_>) -> Result<()> {
        let headers = e
            .headers
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        key: h.key.to_string(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let record = TestRecord {
            topic: topic.to_string(),
            partition: e.partition.unwrap_or(-1),
            offset: -1,
            key: e.key.map(|k| k.into_owned()),
            value: e.value.map(|v| v.into_owned()),
            timestamp: e.timestamp,
            headers,
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((topic.to_string(), record));
        Ok(())
    }
}

/// A task of the driver: one partition of a stage's input.
struct DriverTask {
    chain: Box<dyn RawNode>,
    next_offset: i64,
    /// Reached by the open cycle.
    active: bool,
}

/// Runs a [`Pipeline`] in memory: one commit cycle per input record, internal topics fed
/// to their stages after each commit (see the [`testing`](crate::testing) module).
///
/// ```
/// use exactly_framework::testing::TestDriver;
/// use exactly_framework::{Collector, Context, Operator, Pipeline, Record, Result, Serde};
///
/// struct Upper;
/// impl Operator<Vec<u8>, String> for Upper {
///     type OutKey = Vec<u8>;
///     type OutValue = String;
///     fn process(&mut self, r: Record<Vec<u8>, String>, _: &mut Context, out: &mut dyn Collector<Vec<u8>, String>) -> Result<()> {
///         let v = r.value.to_uppercase();
///         out.collect(r.with_value(v))
///     }
/// }
///
/// let pipeline = Pipeline::from_topic("in", Serde::string())
///     .apply("upper", || Upper)
///     .to_topic("out", Serde::bytes(), Serde::string());
/// let mut driver = TestDriver::new(pipeline);
/// driver.pipe("in", None, Some(b"hello"), 1_000).unwrap();
/// let out = driver.read("out", &Serde::bytes(), &Serde::string()).unwrap();
/// assert_eq!(out, vec![(None, "HELLO".to_string())]);
/// ```
pub struct TestDriver {
    /// Stage inputs (resolved names) and their builders.
    stages: Vec<(String, Arc<BuildTask>)>,
    bad_records: BadRecords,
    /// The internal (repartition) topics, resolved.
    internal: Vec<String>,
    /// Every topic written or piped, by name: its partitions' records.
    topics: BTreeMap<String, Vec<Vec<TestRecord>>>,
    partitions: HashMap<String, i32>,
    default_partitions: i32,
    tasks: BTreeMap<TaskId, DriverTask>,
    sent: Arc<Sent>,
    poison: Arc<Poison>,
    /// Wall-clock time advanced so far.
    advanced: Duration,
    /// Internal records waiting for their stage.
    queue: VecDeque<TestRecord>,
}

impl TestDriver {
    /// A driver for `pipeline`; every topic has one partition unless told otherwise.
    pub fn new(pipeline: Pipeline) -> Self {
        let stages = pipeline
            .stages
            .iter()
            .map(|s| (s.input.resolve(TEST_APPLICATION_ID), s.build.clone()))
            .collect();
        TestDriver {
            stages,
            bad_records: pipeline.bad_records.clone(),
            internal: pipeline
                .internal_topics()
                .iter()
                .map(|n| format!("{TEST_APPLICATION_ID}-{n}"))
                .collect(),
            topics: BTreeMap::new(),
            partitions: HashMap::new(),
            default_partitions: 1,
            tasks: BTreeMap::new(),
            sent: Arc::new(Sent::default()),
            poison: Arc::new(Poison::default()),
            advanced: Duration::ZERO,
            queue: VecDeque::new(),
        }
    }

    /// Gives `topic` `n` partitions (an internal topic is named `test-{name}`; by default
    /// it has as many as the first input, as a worker creates it).
    ///
    /// # Panics
    /// When `n` is not positive.
    pub fn with_partitions(mut self, topic: &str, n: i32) -> Self {
        assert!(n > 0, "a topic needs at least one partition");
        self.partitions.insert(topic.to_string(), n);
        self
    }

    /// Gives every topic not named with [`with_partitions`](Self::with_partitions) `n`
    /// partitions.
    ///
    /// # Panics
    /// When `n` is not positive.
    pub fn with_default_partitions(mut self, n: i32) -> Self {
        assert!(n > 0, "a topic needs at least one partition");
        self.default_partitions = n;
        self
    }

    fn partitions_of(&self, topic: &str) -> i32 {
        if let Some(n) = self.partitions.get(topic) {
            return *n;
        }
        match self.stages.first() {
            Some((first, _)) if self.internal.iter().any(|t| t == topic) => self
                .partitions
                .get(first)
                .copied()
                .unwrap_or(self.default_partitions),
            _ => self.default_partitions,
        }
    }

    /// Sends one record to `topic` (partitioned by its key as Kafka's producer does, or 0
    /// without a key) and runs it through the pipeline, then commits.
    ///
    /// # Errors
    /// The pipeline's error for the record (under [`BadRecords::Fail`]), or when no stage
    /// reads `topic`.
    pub fn pipe(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<()> {
        self.pipe_to(topic, None, key, value, timestamp)
    }

    /// As [`pipe`](Self::pipe), to the given partition.
    ///
    /// # Errors
    /// As [`pipe`](Self::pipe).
    pub fn pipe_to(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<()> {
        if !self.stages.iter().any(|(t, _)| t == topic) {
            return Err(Error::config(
                "topic",
                format!("no stage of this pipeline reads `{topic}`"),
            ));
        }
        let record = TestRecord {
            topic: topic.to_string(),
            partition: partition.unwrap_or(-1),
            offset: -1,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            timestamp: Some(timestamp),
            headers: Vec::new(),
        };
        let record = self.append(record);
        self.queue.push_back(record);
        self.drain()
    }

    /// Encodes `key` and `value` with the codecs and pipes them (see [`pipe`](Self::pipe)).
    ///
    /// # Errors
    /// An encoding error, or as [`pipe`](Self::pipe).
    pub fn pipe_typed<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        codecs: (&dyn Codec<K>, &dyn Codec<V>),
        key: Option<&K>,
        value: &V,
        timestamp: i64,
    ) -> Result<()> {
        let error = |part, message| Error::Encode {
            part,
            topic: topic.to_string(),
            message,
        };
        let k = match key {
            Some(k) => codecs
                .0
                .encode(k)
                .map_err(|m| error("key", m))?
                .map(|c| c.into_owned()),
            None => None,
        };
        let v = codecs
            .1
            .encode(value)
            .map_err(|m| error("value", m))?
            .map(|c| c.into_owned());
        self.pipe(topic, k.as_deref(), v.as_deref(), timestamp)
    }

    /// Moves the wall clock on by `by`: the wall-clock timers that are then due fire
    /// (each in a cycle of its own), then what they wrote is processed and committed.
    ///
    /// # Errors
    /// An operator's error.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<()> {
        self.advanced += by;
        let now = Instant::now() + self.advanced;
        for task in self.tasks.values_mut() {
            if task.chain.wall_clock_due(now) {
                task.active = true;
                task.chain.fire_wall_clock(now)?;
            }
        }
        self.commit()?;
        self.drain()
    }

    /// Every record of `topic` so far, partition by partition, in offset order.
    pub fn records(&self, topic: &str) -> Vec<TestRecord> {
        self.topics
            .get(topic)
            .map(|ps| ps.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The keys and values of `topic`, decoded (see [`records`](Self::records)).
    ///
    /// # Errors
    /// A message when a record does not decode.
    pub fn read<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key: &dyn Codec<K>,
        value: &dyn Codec<V>,
    ) -> std::result::Result<Vec<(Option<K>, V)>, String> {
        self.records(topic)
            .iter()
            .map(|r| {
                let k = match &r.key {
                    Some(b) => Some(key.decode(Some(b))?),
                    None => None,
                };
                Ok((k, value.decode(r.value.as_deref())?))
            })
            .collect()
    }

    /// Appends `record` to its topic (choosing its partition if it has none); returns it
    /// with its partition and offset.
    fn append(&mut self, mut record: TestRecord) -> TestRecord {
        let n = self.partitions_of(&record.topic);
        if record.partition < 0 || record.partition >= n {
            record.partition = match &record.key {
                Some(k) => partition_of(k, n as usize),
                None => 0,
            };
        }
        let partitions = self
            .topics
            .entry(record.topic.clone())
            .or_insert_with(|| vec![Vec::new(); n as usize]);
        let log = &mut partitions[record.partition as usize];
        record.offset = log.len() as i64;
        log.push(record.clone());
        record
    }

    /// Processes queued records, each followed by a commit, until none is left.
    fn drain(&mut self) -> Result<()> {
        while let Some(record) = self.queue.pop_front() {
            self.process(&record)?;
            self.commit()?;
        }
        Ok(())
    }

    fn build(&self, id: &TaskId) -> Result<Box<dyn RawNode>> {
        let build = self
            .stages
            .iter()
            .find(|(t, _)| **t == *id.topic)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| Error::Worker(format!("no stage reads {}", id.topic)))?;
        let mut chain = build(&TaskSetup {
            id: id.clone(),
            application_id: Arc::from(TEST_APPLICATION_ID),
            output: self.sent.clone(),
            state: None,
            start_offset: 0,
            poison: self.poison.clone(),
        })?;
        chain.assign()?;
        Ok(chain)
    }

    /// Runs one record through its task; a bad record follows the pipeline's policy.
    fn process(&mut self, record: &TestRecord) -> Result<()> {
        let id = TaskId {
            topic: Arc::from(record.topic.as_str()),
            partition: record.partition,
        };
        if !self.tasks.contains_key(&id) {
            let chain = self.build(&id)?;
            self.tasks.insert(
                id.clone(),
                DriverTask {
                    chain,
                    next_offset: 0,
                    active: false,
                },
            );
        }
        let task = self.tasks.get_mut(&id).expect("inserted above");
        task.active = true;
        task.next_offset = record.offset + 1;
        let pushed = task.chain.push_message(record);
        if let Some(panic) = self.poison.error() {
            return Err(panic);
        }
        match pushed {
            Ok(()) => Ok(()),
            Err(e) if e.is_bad_record() && self.bad_records != BadRecords::Fail => {
                // The record's cycle aborts (its effects go), then it is diverted.
                self.abort();
                let task = self.tasks.get_mut(&id).expect("inserted above");
                task.active = true;
                divert_record(
                    &self.bad_records,
                    &*self.sent,
                    &record.topic,
                    record,
                    &e.to_string(),
                )
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Drops what the open cycle did.
    fn abort(&mut self) {
        for task in self.tasks.values_mut() {
            if std::mem::take(&mut task.active) {
                task.chain.abort();
            }
        }
        self.sent
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Commits the cycle: barrier and commit in every task it reached, then places what was
    /// sent in its topics (internal ones queue their records for the next stage).
    fn commit(&mut self) -> Result<()> {
        let mut failed = None;
        for task in self.tasks.values_mut() {
            if task.active {
                if let Err(e) = task.chain.barrier() {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            self.abort();
            return Err(e);
        }
        for task in self.tasks.values_mut() {
            if std::mem::take(&mut task.active) {
                task.chain.commit(task.next_offset)?;
            }
        }
        let sent = std::mem::take(&mut *self.sent.0.lock().unwrap_or_else(|p| p.into_inner()));
        for (topic, record) in sent {
            let record = self.append(record);
            if self.stages.iter().any(|(t, _)| *t == topic) {
                self.queue.push_back(record);
            }
        }
        Ok(())
    }
}
