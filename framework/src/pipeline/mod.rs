//! The user's builder: typed chains from one input topic to output topics, with branches
//! ([`Stream::tee`]).
//! See [`Pipeline`].

mod bad_records;
mod merge;
pub(crate) mod node;
mod tee;

pub(crate) use bad_records::divert_record;
pub use bad_records::BadRecords;

use crate::codec::{Codec, InputKey, RawSerde};
use crate::error::Result;
use crate::operator::{Context, Operator};
use crate::producer::{Output, Sink};
use crate::record::TaskId;
use crate::state::manager::StateManager;
use crate::topics::TopicName;
use node::{Downstream, Node, OperatorNode, RawNode, SinkNode, SourceNode};
use std::marker::PhantomData;
use std::sync::Arc;

type BuildChain<K, V> =
    dyn Fn(&TaskSetup, Box<dyn Node<K, V>>) -> Result<Box<dyn RawNode>> + Send + Sync;
pub(crate) type BuildTask = dyn Fn(&TaskSetup) -> Result<Box<dyn RawNode>> + Send + Sync;

/// One sub-pipeline: an input topic and the chain its tasks run. A pipeline with a
/// repartition has two; the runtime's one consumer reads all their inputs.
#[derive(Clone)]
pub(crate) struct Stage {
    pub(crate) input: TopicName,
    pub(crate) build: Arc<BuildTask>,
    /// The states its operators serve to queries (`Stream::serves_state`).
    pub(crate) queryable: Vec<QueryDecl>,
    /// An input this stage's input is merged with partition by partition
    /// (`Stream::merge`): their partition counts must be equal (checked at start).
    pub(crate) copartitioned_with: Option<TopicName>,
}

/// A state that a stage's operator serves to queries: known to the worker's query server
/// from the start, so that a worker without a task of the stage can still route a key.
#[derive(Clone)]
pub(crate) struct QueryDecl {
    pub(crate) operator: String,
    pub(crate) state: String,
    pub(crate) codec: Arc<dyn crate::state::queryable::QueryCodec>,
}

/// What the runtime gives a new task's chain.
pub(crate) struct TaskSetup {
    pub(crate) id: TaskId,
    pub(crate) application_id: Arc<str>,
    /// Where the task's output and side records go.
    pub(crate) output: Arc<dyn Output>,
    /// The worker's state (`None`: in-memory state, the test driver).
    pub(crate) state: Option<Arc<StateManager>>,
    /// The committed input offset the task resumes at.
    pub(crate) start_offset: i64,
    /// The worker's record of panics in user code.
    pub(crate) poison: Arc<crate::poison::Poison>,
}

/// A runnable pipeline: one input topic, a chain of operators, one output topic.
///
/// Start one with [`Pipeline::from_topic`], add operators, finish with [`Stream::to`] or
/// [`Stream::to_topic`], and hand it to [`Runtime::run`](crate::Runtime::run).
///
/// A pipeline reads one topic, passes each record through a chain of operators, and writes
/// what they emit to one topic. Build it once; the runtime makes one instance of every
/// operator per input partition (a *task*) on whichever worker owns that partition.
///
/// ```no_run
/// use exactly_framework::{Collector, Config, Context, Operator, Pipeline, Record, Result, Runtime, Serde};
///
/// /// A custom operator: one required method.
/// struct Words;
/// impl Operator<Vec<u8>, String> for Words {
///     type OutKey = Vec<u8>;
///     type OutValue = String;
///     fn process(&mut self, r: Record<Vec<u8>, String>, _: &mut Context, out: &mut dyn Collector<Vec<u8>, String>) -> Result<()> {
///         for w in r.value.split_whitespace() {
///             out.collect(r.clone().with_value(w.to_lowercase()))?;
///         }
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<()> {
/// let pipeline = Pipeline::from_topic("lines", Serde::string())   // Stream<Vec<u8>, String>
///     .apply("words", || Words)                                    // one instance per partition
///     .to_topic("words", Serde::bytes(), Serde::string());         // Pipeline
/// let config = Config::new("words-app", "127.0.0.1:9092");        // exactly-once by default
/// Runtime::new(config).run(pipeline).await                         // until SIGINT/SIGTERM
/// # }
/// ```
///
/// `map`, `filter`, `flat_map` and the other ready-made operators come from the
/// `exactly-operators` crate: `use exactly::prelude::*` and write
/// `.flat_map(|line: String| ...).filter(|w: &String| ...).map(|w: String| ...)`.
/// They are built on [`Stream::apply`] exactly like `Words` above.
///
/// Serdes: [`Serde::string`](crate::Serde::string), `bytes`, `raw` (nullable bytes),
/// `json`, `bincode`, or your own [`Codec`]. Output partitioning: by key (default) or
/// [`Partitioning::SameAsInput`](crate::Partitioning::SameAsInput) through
/// [`Stream::to`] with a [`Sink`].
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) stages: Vec<Stage>,
    pub(crate) output: String,
    pub(crate) operators: Vec<String>,
    /// Topics besides the input and the output that operators use — side outputs written
    /// with `Context::emit_to`, global tables read, the dead-letter topic — checked at start.
    pub(crate) side_topics: Vec<String>,
    /// What to do with a record that cannot be processed.
    pub(crate) bad_records: BadRecords,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "inputs",
                &self.stages.iter().map(|s| &s.input).collect::<Vec<_>>(),
            )
            .field("operators", &self.operators)
            .field("output", &self.output)
            .field("side_topics", &self.side_topics)
            .field("bad_records", &self.bad_records)
            .finish()
    }
}

impl Pipeline {
    /// Reads `topic`, decoding values with `value`; keys stay raw bytes.
    pub fn from_topic<V: Send + 'static>(
        topic: impl Into<String>,
        value: impl Codec<V>,
    ) -> Stream<Vec<u8>, V> {
        Self::from_topic_with_key(topic, crate::codec::BytesSerde, value)
    }

    /// Reads `topic`, decoding keys with `key` and values with `value`.
    pub fn from_topic_with_key<K: Send + 'static, V: Send + 'static>(
        topic: impl Into<String>,
        key: impl Codec<K>,
        value: impl Codec<V>,
    ) -> Stream<K, V> {
        Stream::source(
            TopicName::External(topic.into()),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            key,
            value,
        )
    }

    /// Copies `input` to `output` unchanged: key, value (nulls kept), timestamp and headers,
    /// each record to the same partition number.
    pub fn copy(input: impl Into<String>, output: impl Into<String>) -> Pipeline {
        Self::from_topic_with_key(input, RawSerde, RawSerde)
            .to(Sink::topic(output, RawSerde, RawSerde)
                .partitioning(crate::producer::Partitioning::SameAsInput))
    }

    /// The input topic (of the first sub-pipeline).
    pub fn input_topic(&self) -> &str {
        match &self.stages[0].input {
            TopicName::External(t) | TopicName::Internal(t) => t,
        }
    }

    /// Names of the internal (repartition) topics, without the application id prefix.
    pub fn internal_topics(&self) -> Vec<String> {
        self.stages
            .iter()
            .filter_map(|s| match &s.input {
                TopicName::Internal(n) => Some(n.clone()),
                TopicName::External(_) => None,
            })
            .collect()
    }

    /// Every topic the pipeline's tasks consume, for `application_id`: its input and its
    /// internal (repartition) topics.
    pub fn topics_read(&self, application_id: &str) -> Vec<String> {
        self.stages
            .iter()
            .map(|s| s.input.resolve(application_id))
            .collect()
    }

    /// The output topic.
    pub fn output_topic(&self) -> &str {
        &self.output
    }

    /// The other topics operators use, declared with [`Stream::writes_to`] and
    /// [`Stream::reads_from`].
    pub fn side_topics(&self) -> &[String] {
        &self.side_topics
    }

    /// Sets what the workers do with a record they cannot process (default
    /// [`BadRecords::Fail`]); a dead-letter topic is checked at start like the output.
    pub fn on_bad_records(mut self, policy: BadRecords) -> Pipeline {
        if let BadRecords::DeadLetter(topic) = &policy {
            if !self.side_topics.contains(topic) {
                self.side_topics.push(topic.clone());
            }
        }
        self.bad_records = policy;
        self
    }

    /// What the workers do with a record they cannot process.
    pub fn bad_records(&self) -> &BadRecords {
        &self.bad_records
    }
}

/// A pipeline under construction whose records are `Record<K, V>` at this point.
pub struct Stream<K, V> {
    input: TopicName,
    earlier: Vec<Stage>,
    operators: Vec<String>,
    side_topics: Vec<String>,
    build: Arc<BuildChain<K, V>>,
    /// The stage input's key codec (see `codec::InputKey`).
    input_key: InputKey,
    /// The states this stage's operators serve to queries.
    queryable: Vec<QueryDecl>,
    /// Stages of tee branches (after a repartition in a branch), added at the end.
    branches: Vec<Stage>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Send + 'static, V: Send + 'static> Stream<K, V> {
    fn source(
        input: TopicName,
        earlier: Vec<Stage>,
        operators: Vec<String>,
        side_topics: Vec<String>,
        key: impl Codec<K>,
        value: impl Codec<V>,
    ) -> Self {
        let key: Arc<dyn Codec<K>> = Arc::new(key);
        let value: Arc<dyn Codec<V>> = Arc::new(value);
        let input_key = InputKey::of(key.clone());
        Stream {
            input,
            earlier,
            operators,
            side_topics,
            input_key,
            queryable: Vec::new(),
            branches: Vec::new(),
            build: Arc::new(move |task, next| {
                Ok(Box::new(SourceNode {
                    topic: task.id.topic.clone(),
                    key: key.clone(),
                    value: value.clone(),
                    next,
                    poison: task.poison.clone(),
                }))
            }),
            _types: PhantomData,
        }
    }

    /// Re-partitions the stream by its current key through an internal topic
    /// `{application_id}-{name}-repartition` (as many partitions as the input), written in
    /// the same transaction as everything else: the hop is exactly-once too. Records after
    /// this point run in a second sub-pipeline, whose tasks are the internal topic's
    /// partitions, so each key meets all its records in one task. Use it before keyed
    /// state when the input is not already partitioned by that key.
    ///
    /// # Panics
    /// When `name` is already used in this pipeline.
    pub fn repartition(
        self,
        name: impl Into<String>,
        key: impl Codec<K> + Clone,
        value: impl Codec<V> + Clone,
    ) -> Stream<K, V> {
        let name = name.into();
        assert!(
            !self.operators.contains(&name),
            "operator name `{name}` is used twice in this pipeline; names must be unique"
        );
        let internal = TopicName::Internal(format!("{name}-repartition"));
        let sink = Sink {
            topic: internal.clone(),
            key: Arc::new(key.clone()),
            value: Arc::new(value.clone()),
            partitioning: crate::producer::Partitioning::ByKey,
        };
        let mut operators = self.operators.clone();
        operators.push(name);
        let finished = self.to(sink);
        Stream::source(
            internal,
            finished.stages,
            operators,
            finished.side_topics,
            key,
            value,
        )
    }

    /// Adds an operator. `factory` makes one instance per task (input partition); `name`
    /// identifies the operator in logs, metrics and (for stateful operators) state. An
    /// operator made this way opens its state in [`Operator::on_assign`]; see
    /// [`apply_with`](Self::apply_with) to build it with its state instead.
    ///
    /// # Panics
    /// When `name` is already used in this pipeline (names must be unique, since they
    /// name state).
    pub fn apply<O, F>(self, name: impl Into<String>, factory: F) -> Stream<O::OutKey, O::OutValue>
    where
        O: Operator<K, V>,
        F: Fn() -> O + Send + Sync + 'static,
    {
        self.apply_with(name, move |_: &mut Context| Ok(factory()))
    }

    /// Adds an operator built, once per task, by `constructor` from the task's
    /// [`Context`] — where it opens its keyed state (restored by then) and global tables —
    /// so that the operator holds its handles from the start (timely's `unary`
    /// constructor; no `Option` fields, no "called before on_assign"). The constructor
    /// runs when the task starts, before its first record and outside any transaction.
    ///
    /// ```
    /// use exactly_framework::{Collector, Context, KeyedState, Operator, Pipeline, Record, Result, Serde, StateDescriptor};
    ///
    /// /// How many records each key has had.
    /// struct Seen {
    ///     counts: KeyedState<Option<String>, u64>,
    /// }
    /// impl Operator<String, String> for Seen {
    ///     type OutKey = String;
    ///     type OutValue = u64;
    ///     fn process(&mut self, r: Record<String, String>, _: &mut Context, out: &mut dyn Collector<String, u64>) -> Result<()> {
    ///         let n = self.counts.get(&r.key)?.unwrap_or(0) + 1;
    ///         self.counts.put(&r.key, &n)?;
    ///         out.collect(r.with_value(n))
    ///     }
    /// }
    ///
    /// let pipeline = Pipeline::from_topic_with_key("clicks", Serde::string(), Serde::string())
    ///     .apply_with("seen", |ctx: &mut Context| {
    ///         Ok(Seen { counts: ctx.keyed_state(&StateDescriptor::new("counts"))? })
    ///     })
    ///     .to_topic("seen", Serde::string(), Serde::json::<u64>());
    /// # let _ = pipeline;
    /// ```
    ///
    /// # Panics
    /// When `name` is already used in this pipeline.
    pub fn apply_with<O, F>(
        self,
        name: impl Into<String>,
        constructor: F,
    ) -> Stream<O::OutKey, O::OutValue>
    where
        O: Operator<K, V>,
        F: Fn(&mut Context) -> Result<O> + Send + Sync + 'static,
    {
        let name = name.into();
        assert!(
            !self.operators.contains(&name),
            "operator name `{name}` is used twice in this pipeline; names must be unique"
        );
        let mut operators = self.operators;
        operators.push(name.clone());
        let upstream = self.build;
        let input_key = self.input_key.clone();
        Stream {
            input: self.input,
            earlier: self.earlier,
            operators,
            side_topics: self.side_topics,
            input_key: self.input_key,
            queryable: self.queryable,
            branches: self.branches,
            build: Arc::new(move |task, next| {
                let mut ctx = Context::with_state(
                    task.id.clone(),
                    name.clone(),
                    task.state.clone(),
                    task.output.clone(),
                    task.start_offset,
                    input_key.clone(),
                );
                let op = crate::poison::guard(
                    &task.poison,
                    || constructor(&mut ctx),
                    || {
                        (
                            name.clone(),
                            format!("in its constructor for task {}", task.id),
                        )
                    },
                )?;
                let node: OperatorNode<O, K, V> = OperatorNode {
                    op,
                    ctx,
                    next: Downstream(next),
                    assigned: false,
                    poison: task.poison.clone(),
                    _in: PhantomData,
                };
                upstream(task, Box::new(node))
            }),
            _types: PhantomData,
        }
    }

    /// Declares that operator `operator` of this stage serves its keyed state `state`, keyed
    /// by `SK` with values `SV`, to the worker's query server (opened with
    /// [`Context::queryable_state`](crate::Context::queryable_state)): every worker's
    /// server then knows the store from the start and routes its keys, even one that has no
    /// task of this stage. The built-in `count`, `reduce` and `aggregate` declare theirs.
    /// Ignored unless `SK` is the stage's input key type or its `Option`.
    pub fn serves_state<SK, SV>(mut self, operator: &str, state: &str) -> Self
    where
        SK: serde::Serialize + serde::de::DeserializeOwned + 'static,
        SV: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        match self.input_key.codec::<SK>() {
            Some(codec) => self.queryable.push(QueryDecl {
                operator: operator.to_string(),
                state: state.to_string(),
                codec: Arc::new(crate::state::queryable::TypedQueryCodec::<SK, SV>::new(
                    codec,
                )),
            }),
            None => tracing::debug!(
                operator,
                state,
                "not served to queries: the state is not keyed by its stage's input key type"
            ),
        }
        self
    }

    /// Ends the pipeline in a sink.
    pub fn to(self, sink: Sink<K, V>) -> Pipeline {
        let output = match &sink.topic {
            TopicName::External(t) | TopicName::Internal(t) => t.clone(),
        };
        let sink = Arc::new(sink);
        let chain = self.build;
        let mut stages = self.earlier;
        stages.push(Stage {
            input: self.input,
            queryable: self.queryable,
            copartitioned_with: None,
            build: Arc::new(move |task| {
                chain(
                    task,
                    Box::new(SinkNode {
                        topic: sink.topic.resolve(&task.application_id),
                        sink: sink.clone(),
                        output: task.output.clone(),
                        poison: task.poison.clone(),
                    }),
                )
            }),
        });
        stages.extend(self.branches);
        Pipeline {
            stages: tee::combine_stages(stages),
            output,
            operators: self.operators,
            side_topics: self.side_topics,
            bad_records: BadRecords::Fail,
        }
    }

    /// Ends the pipeline in `topic`, partitioned by key.
    pub fn to_topic(
        self,
        topic: impl Into<String>,
        key: impl Codec<K>,
        value: impl Codec<V>,
    ) -> Pipeline {
        self.to(Sink::topic(topic, key, value))
    }

    /// Declares `topic` as a side output that operators write with
    /// [`Context::emit_to`](crate::Context::emit_to) (a branch, late window records): the
    /// worker checks at start that it exists, as it does for the output topic.
    pub fn writes_to(mut self, topic: impl Into<String>) -> Self {
        let topic = topic.into();
        if !self.side_topics.contains(&topic) {
            self.side_topics.push(topic);
        }
        self
    }

    /// Declares `topic` as one that operators read besides the input (a global table's
    /// topic; `join_table` declares it): the worker checks at start that it exists, as it
    /// does for the input, instead of finding out at the first record.
    pub fn reads_from(mut self, topic: impl Into<String>) -> Self {
        let topic = topic.into();
        if !self.side_topics.contains(&topic) {
            self.side_topics.push(topic);
        }
        self
    }

    /// The names of the operators added so far, in order.
    pub fn operator_names(&self) -> &[String] {
        &self.operators
    }
}
