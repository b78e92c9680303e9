//! The user's builder: a typed chain from one input topic to one output topic.
//! See [`Pipeline`].

pub(crate) mod node;

use crate::codec::{Codec, RawSerde};
use crate::operator::{Context, Operator};
use crate::record::TaskId;
use crate::sink::{OutputProducer, Sink, SinkNode};
use crate::state::changelog::StateEnv;
use node::{Downstream, Node, OperatorNode, RawNode, SourceNode};
use std::marker::PhantomData;
use std::sync::Arc;

type BuildChain<K, V> = dyn Fn(&TaskSetup, Box<dyn Node<K, V>>) -> Box<dyn RawNode> + Send + Sync;
type BuildTask = dyn Fn(&TaskSetup) -> Box<dyn RawNode> + Send + Sync;

/// What the runtime gives a new task's chain.
pub(crate) struct TaskSetup {
    pub(crate) id: TaskId,
    pub(crate) output: Arc<OutputProducer>,
    pub(crate) state: Arc<StateEnv>,
    /// The committed input offset the task resumes at.
    pub(crate) start_offset: i64,
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
    pub(crate) input: Arc<str>,
    pub(crate) output: String,
    pub(crate) operators: Vec<String>,
    pub(crate) build: Arc<BuildTask>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("input", &self.input)
            .field("operators", &self.operators)
            .field("output", &self.output)
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
        let topic: Arc<str> = Arc::from(topic.into());
        let key: Arc<dyn Codec<K>> = Arc::new(key);
        let value: Arc<dyn Codec<V>> = Arc::new(value);
        let t = topic.clone();
        Stream {
            input: topic,
            operators: Vec::new(),
            build: Arc::new(move |_task, next| {
                Box::new(SourceNode {
                    topic: t.clone(),
                    key: key.clone(),
                    value: value.clone(),
                    next,
                })
            }),
            _types: PhantomData,
        }
    }

    /// Copies `input` to `output` unchanged: key, value (nulls kept), timestamp and headers,
    /// each record to the same partition number.
    pub fn copy(input: impl Into<String>, output: impl Into<String>) -> Pipeline {
        Self::from_topic_with_key(input, RawSerde, RawSerde)
            .to(Sink::topic(output, RawSerde, RawSerde)
                .partitioning(crate::sink::Partitioning::SameAsInput))
    }

    /// The input topic.
    pub fn input_topic(&self) -> &str {
        &self.input
    }

    /// The output topic.
    pub fn output_topic(&self) -> &str {
        &self.output
    }
}

/// A pipeline under construction whose records are `Record<K, V>` at this point.
pub struct Stream<K, V> {
    input: Arc<str>,
    operators: Vec<String>,
    build: Arc<BuildChain<K, V>>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Send + 'static, V: Send + 'static> Stream<K, V> {
    /// Adds an operator. `factory` makes one instance per task (input partition); `name`
    /// identifies the operator in logs, metrics and (for stateful operators) state.
    ///
    /// # Panics
    /// When `name` is already used in this pipeline (names must be unique, since they
    /// name state).
    pub fn apply<O, F>(self, name: impl Into<String>, factory: F) -> Stream<O::OutKey, O::OutValue>
    where
        O: Operator<K, V>,
        F: Fn() -> O + Send + Sync + 'static,
    {
        let name = name.into();
        assert!(
            !self.operators.contains(&name),
            "operator name `{name}` is used twice in this pipeline; names must be unique"
        );
        let mut operators = self.operators;
        operators.push(name.clone());
        let upstream = self.build;
        Stream {
            input: self.input,
            operators,
            build: Arc::new(move |task, next| {
                let node: OperatorNode<O, K, V> = OperatorNode {
                    op: factory(),
                    ctx: Context::with_state(
                        task.id.clone(),
                        name.clone(),
                        task.state.clone(),
                        task.start_offset,
                    ),
                    next: Downstream(next),
                    assigned: false,
                    _in: PhantomData,
                };
                upstream(task, Box::new(node))
            }),
            _types: PhantomData,
        }
    }

    /// Ends the pipeline in a sink.
    pub fn to(self, sink: Sink<K, V>) -> Pipeline {
        let output = sink.topic.clone();
        let sink = Arc::new(sink);
        let chain = self.build;
        Pipeline {
            input: self.input,
            output,
            operators: self.operators,
            build: Arc::new(move |task| {
                chain(
                    task,
                    Box::new(SinkNode {
                        sink: sink.clone(),
                        output: task.output.clone(),
                    }),
                )
            }),
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

    /// The names of the operators added so far, in order.
    pub fn operator_names(&self) -> &[String] {
        &self.operators
    }
}
