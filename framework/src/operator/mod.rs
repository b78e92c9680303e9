//! The operator trait: how user code sees records, and how it emits them.
//!
//! An [`Operator`] has one required method, [`Operator::process`]; lifecycle hooks default to
//! nothing. The runtime makes one instance per task (input partition), so an operator's
//! fields are naturally per-partition.

use crate::codec::InputKey;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::producer::{Output, Sink};
use crate::record::{Record, TaskId};
use crate::state::keyed::{Committed, StateCell};
use crate::state::manager::StateManager;
use crate::state::queryable::{QueryCodec, TypedQueryCodec};
use crate::state::{Checkpoint, KeyedState, StateDescriptor};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

mod timers;

/// The application id of operators run without a worker (the harness, the test driver):
/// internal and side topics resolve under it.
pub(crate) const TEST_APPLICATION_ID: &str = "test";
pub(crate) use timers::{fire_event_time, fire_wall_clock};
pub use timers::{Timer, TimerKind};

/// Receives the records an operator emits (the next operator, or the sink).
pub trait Collector<K, V> {
    /// Passes one record downstream.
    ///
    /// # Errors
    /// Whatever the downstream operators or the sink return (an encode error, a produce
    /// error); return it from [`Operator::process`] unchanged.
    fn collect(&mut self, record: Record<K, V>) -> Result<()>;
}

/// What an operator instance knows about where it runs, and its door to keyed state.
pub struct Context {
    task: TaskId,
    operator: String,
    env: Option<Arc<StateManager>>,
    start_offset: i64,
    states: Vec<(String, Arc<Mutex<StateCell>>)>,
    side: Vec<SideRecord>,
    /// The stage input's key codec (queries of states keyed by the input key).
    input_key: Option<InputKey>,
    /// Where side records go (`None`: kept in `side`, the harness).
    output: Option<Arc<dyn Output>>,
    /// The operator's timers ([`Context::enable_timers`], [`Context::schedule_wall_clock`]).
    timers: timers::Timers,
}

/// A record an operator wrote to a side topic with [`Context::emit_to`] under the test
/// harness (no Kafka): the topic and the encoded key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRecord {
    /// The topic.
    pub topic: String,
    /// The encoded key.
    pub key: Option<Vec<u8>>,
    /// The encoded value.
    pub value: Option<Vec<u8>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("task", &self.task)
            .field("operator", &self.operator)
            .field(
                "states",
                &self.states.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Context {
    /// A context for `operator` in `task`, with in-memory state (the test harness).
    pub fn new(task: TaskId, operator: impl Into<String>) -> Self {
        Context {
            task,
            operator: operator.into(),
            env: None,
            start_offset: 0,
            states: Vec::new(),
            side: Vec::new(),
            input_key: None,
            output: None,
            timers: timers::Timers::default(),
        }
    }

    /// A context backed by the worker's state store, for a task resuming at `start_offset`.
    pub(crate) fn with_state(
        task: TaskId,
        operator: String,
        env: Option<Arc<StateManager>>,
        output: Arc<dyn Output>,
        start_offset: i64,
        input_key: InputKey,
    ) -> Self {
        Context {
            task,
            operator,
            env,
            output: Some(output),
            start_offset,
            states: Vec::new(),
            side: Vec::new(),
            input_key: Some(input_key),
            timers: timers::Timers::default(),
        }
    }

    /// Opens the keyed state `descriptor` of this operator in this task: call it in
    /// [`Operator::on_assign`] and keep the handle. The first call on a worker restores the
    /// state from its changelog when the local store is not current (see
    /// [`state`](crate::state)).
    ///
    /// # Errors
    /// [`Error::State`] when the store or the restore fails; [`Error::Config`] for a
    /// changelog topic with the wrong partition count or a name opened twice.
    pub fn keyed_state<K, V>(
        &mut self,
        descriptor: &StateDescriptor<K, V>,
    ) -> Result<KeyedState<K, V>>
    where
        K: Serialize,
        V: Serialize + DeserializeOwned,
    {
        self.open_state(descriptor, None)
    }

    /// As [`keyed_state`](Self::keyed_state), and the state is served by the worker's query
    /// server when it has one ([`Config::query_server`](crate::Config::query_server)): under
    /// `/stores/{operator}` (`/stores/{operator}.{state}` when the operator has several),
    /// committed values only. A key in a URL is decoded with the stage's input key serde,
    /// so the state must be keyed by the stage's input key type, or by its `Option` (a
    /// record's key, as an aggregation after `key_by` keeps it); otherwise it is opened but
    /// not served. The built-in `count`,
    /// `reduce` and `aggregate` open their state this way.
    ///
    /// # Errors
    /// As [`keyed_state`](Self::keyed_state).
    pub fn queryable_state<K, V>(
        &mut self,
        descriptor: &StateDescriptor<K, V>,
    ) -> Result<KeyedState<K, V>>
    where
        K: Serialize + DeserializeOwned + 'static,
        V: Serialize + DeserializeOwned + 'static,
    {
        let query = self
            .input_key
            .as_ref()
            .and_then(InputKey::codec::<K>)
            .map(|codec| Arc::new(TypedQueryCodec::<K, V>::new(codec)) as Arc<dyn QueryCodec>);
        if query.is_none() && self.env.is_some() {
            tracing::warn!(operator = %self.operator, state = descriptor.name(), "state not served to queries: it is not keyed by its stage's input key type");
        }
        self.open_state(descriptor, query)
    }

    fn open_state<K, V>(
        &mut self,
        descriptor: &StateDescriptor<K, V>,
        query: Option<Arc<dyn QueryCodec>>,
    ) -> Result<KeyedState<K, V>> {
        let name = descriptor.name().to_string();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || name.is_empty()
        {
            return Err(Error::config(
                "state",
                format!("state name `{name}` may only hold ASCII letters, digits, '-' and '_'"),
            ));
        }
        if self.states.iter().any(|(n, _)| *n == name) {
            return Err(Error::config(
                "state",
                format!(
                    "state `{name}` of operator `{}` is opened twice",
                    self.operator
                ),
            ));
        }
        let cell = match &self.env {
            Some(env) => {
                env.open_cell(&self.task, &self.operator, &name, self.start_offset, query)?
            }
            None => StateCell::new(
                Committed::Memory(HashMap::new()),
                None,
                Checkpoint::now(0, 0),
                None,
            ),
        };
        let cell = Arc::new(Mutex::new(cell));
        self.states.push((name.clone(), cell.clone()));
        Ok(KeyedState {
            cell,
            name,
            _types: PhantomData,
        })
    }

    fn each_state(&self, mut f: impl FnMut(&mut StateCell) -> Result<()>) -> Result<()> {
        for (_, cell) in &self.states {
            f(&mut cell.lock().unwrap_or_else(|p| p.into_inner()))?;
        }
        Ok(())
    }

    /// Commit step 2 for this operator's states.
    pub(crate) fn state_barrier(&mut self) -> Result<()> {
        self.each_state(StateCell::barrier)
    }

    /// Commit step 5 for this operator's states.
    pub(crate) fn state_commit(&mut self, input_offset: i64) -> Result<()> {
        self.each_state(|c| c.commit(input_offset))
    }

    /// Drops this operator's uncommitted state changes.
    pub(crate) fn state_abort(&mut self) {
        self.timers.aborted();
        let _ = self.each_state(|c| {
            c.abort();
            Ok(())
        });
    }

    /// Writes `record` to `sink`'s topic in the open transaction, beside the pipeline's
    /// output: a side output (records routed elsewhere by a branch, late records of a
    /// window). The topic must exist; declare it with
    /// [`Stream::writes_to`](crate::Stream::writes_to) so the worker checks it at start.
    /// Under the test harness the encoded record is kept in [`Context::side_records`].
    ///
    /// # Errors
    /// [`Error::Encode`] when the codecs fail; a produce error.
    pub fn emit_to<K: 'static, V: 'static>(
        &mut self,
        sink: &Sink<K, V>,
        record: Record<K, V>,
    ) -> Result<()> {
        let application = self
            .env
            .as_ref()
            .map_or(TEST_APPLICATION_ID, |e| e.config.application_id.as_str());
        let topic = sink.resolve(application);
        let encoded = sink.encode(&topic, &record)?;
        match &self.output {
            Some(output) => output.send_encoded(&topic, encoded),
            None => {
                self.side.push(SideRecord {
                    topic,
                    key: encoded.key.map(|k| k.into_owned()),
                    value: encoded.value.map(|v| v.into_owned()),
                });
                Ok(())
            }
        }
    }

    /// The records written with [`emit_to`](Self::emit_to) so far under the test harness
    /// (always empty in a worker, where they went to Kafka).
    pub fn side_records(&self) -> &[SideRecord] {
        &self.side
    }

    /// Opens `table` for this operator: a topic table is materialised in this process (or
    /// found loaded, shared by every task that joins against it) and read to its end before
    /// this returns; an in-memory table is used as it is. Call it in
    /// [`Operator::on_assign`] (or an operator's constructor) and keep the handle. See
    /// [`table`](crate::table).
    ///
    /// # Errors
    /// [`Error::MissingTopic`] for a missing table topic; [`Error::Decode`] for a table
    /// record that does not decode; [`Error::State`] when the table cannot be read to its
    /// end in time; [`Error::Config`] for a topic table under the test harness.
    pub fn global_table<K, T>(
        &self,
        table: &crate::table::Table<K, T>,
    ) -> Result<crate::table::GlobalTable<K, T>>
    where
        K: Eq + std::hash::Hash + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        crate::table::open(table, self.config(), &self.operator)
    }

    /// The worker's configuration (`None` under the test harness): the brokers, the
    /// application id, the guarantee.
    pub fn config(&self) -> Option<&Config> {
        self.env.as_ref().map(|e| &e.config)
    }

    /// The task (input partition) this instance serves.
    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// The operator's name in the pipeline.
    pub fn operator(&self) -> &str {
        &self.operator
    }
}

/// A step of a pipeline: takes records of type `Record<K, V>`, emits `Record<OutKey, OutValue>`.
///
/// The runtime drives each instance through, in order: [`on_assign`](Operator::on_assign)
/// once when the task starts, then [`process`](Operator::process) for each record of the task and
/// [`on_barrier`](Operator::on_barrier) before each commit, followed by
/// [`on_commit`](Operator::on_commit) or [`on_abort`](Operator::on_abort), and finally
/// [`on_revoke`](Operator::on_revoke) when the partition leaves this worker.
///
/// A panic in any of these methods (or in a codec) is caught where it happens: the open
/// transaction is aborted before anything else runs, nothing of the cycle is committed,
/// and the worker stops with [`Error::Panicked`] naming the
/// operator, the task and the record's offset.
pub trait Operator<K, V>: Send + 'static {
    /// Key type of emitted records.
    type OutKey: Send + 'static;
    /// Value type of emitted records.
    type OutValue: Send + 'static;

    /// Handles one record, emitting any number of records to `out`.
    ///
    /// # Errors
    /// An error stops the worker (after aborting the open transaction, so nothing of the
    /// failed cycle becomes visible); return [`Error::Operator`] for
    /// your own failures.
    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut Context,
        out: &mut dyn Collector<Self::OutKey, Self::OutValue>,
    ) -> Result<()>;

    /// Called once when the task starts: before its first record, and outside any
    /// transaction (the worker commits its open cycle first). Open keyed state here: its
    /// restore runs now.
    ///
    /// # Errors
    /// As for `process`; the task's start is retried at its next record.
    fn on_assign(&mut self, ctx: &mut Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called before each commit of a cycle in which this task processed records: emit what
    /// must be part of this transaction.
    ///
    /// # Errors
    /// As for `process`; the cycle is aborted.
    fn on_barrier(
        &mut self,
        ctx: &mut Context,
        out: &mut dyn Collector<Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        let _ = (ctx, out);
        Ok(())
    }

    /// Called after the transaction that holds everything since the last barrier committed
    /// (for the tasks whose barrier ran).
    ///
    /// # Errors
    /// As for `process`.
    fn on_commit(&mut self, ctx: &mut Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called after the transaction was aborted: forget everything since the last commit;
    /// the input is replayed from there.
    fn on_abort(&mut self, ctx: &mut Context) {
        let _ = ctx;
    }

    /// Called when the task leaves this worker (after its last commit or abort).
    fn on_revoke(&mut self, ctx: &mut Context) {
        let _ = ctx;
    }

    /// Called when a timer fires: an event-time timer scheduled with
    /// [`Context::schedule_event_time`] once stream time reaches it, or the wall-clock timer
    /// of [`Context::schedule_wall_clock`]. What it emits and writes commits with the cycle
    /// it fires in. [`Timer::record`] makes a record to emit.
    ///
    /// # Errors
    /// As [`process`](Self::process).
    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut Context,
        out: &mut dyn Collector<Self::OutKey, Self::OutValue>,
    ) -> Result<()> {
        let _ = (timer, ctx, out);
        Ok(())
    }
}
