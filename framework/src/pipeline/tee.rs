//! A pipeline is a graph: [`Stream::tee`] feeds one stream to a branch that ends in a sink
//! of its own, while the stream goes on — in the same task and the same transaction; and
//! stages that read the same topic (one stream used in two joins) share its tasks.

use super::node::{InputMessage, Node, RawNode};
use super::{Pipeline, Stage, Stream};
use crate::error::{Error, Result};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Stream<K, V> {
    /// Feeds every record of this stream also to `branch`, a sub-pipeline that ends in a sink
    /// of its own (and may hold state, repartitions, windows, further tees), while this
    /// stream goes on. Both run in the same task, read the input once, and commit in the
    /// same transaction: a record's effects on every branch become visible together.
    ///
    /// ```
    /// use exactly_framework::{Pipeline, Serde};
    ///
    /// // Clicks "user,country": the raw clicks per country and a copy of every click.
    /// let pipeline = Pipeline::from_topic_with_key("clicks", Serde::string(), Serde::string())
    ///     .tee(|clicks| clicks.to_topic("clicks-copy", Serde::string(), Serde::string()))
    ///     .to_topic("clicks-out", Serde::string(), Serde::string());
    /// assert_eq!(pipeline.side_topics(), ["clicks-copy"]);
    /// ```
    ///
    /// # Panics
    /// When the branch reuses an operator name of the pipeline.
    pub fn tee(mut self, branch: impl FnOnce(Stream<K, V>) -> Pipeline) -> Stream<K, V> {
        let input_key = self.input_key.clone();
        let head = Stream {
            input: self.input.clone(),
            earlier: Vec::new(),
            operators: self.operators.clone(),
            side_topics: self.side_topics.clone(),
            build: Arc::new(|_, next| Ok(Box::new(BranchHead(Some(next))) as Box<dyn RawNode>)),
            input_key,
            queryable: Vec::new(),
            branches: Vec::new(),
            _types: PhantomData,
        };
        let mut built = branch(head);
        // The branch's first stage runs in this stage's tasks; the rest (after a
        // repartition in the branch) are stages of their own.
        let first = built.stages.remove(0);
        self.operators = built.operators;
        self.side_topics = built.side_topics;
        if !self.side_topics.contains(&built.output) && !built.output.is_empty() {
            self.side_topics.push(built.output);
        }
        self.queryable.extend(first.queryable);
        self.branches.extend(built.stages);
        let upstream = self.build;
        let branch_build = first.build;
        self.build = Arc::new(move |task, next| {
            let head = branch_build(task)?
                .into_any()
                .downcast::<BranchHead<K, V>>()
                .map_err(|_| Error::Worker("a tee branch did not start at its tee".into()))?;
            let branch = head
                .0
                .ok_or_else(|| Error::Worker("a tee branch was built twice".into()))?;
            upstream(task, Box::new(Tee { branch, next }))
        });
        self
    }
}

/// The start of a tee's branch: holds the branch's chain until the tee takes it.
struct BranchHead<K, V>(Option<Box<dyn Node<K, V>>>);

impl<K: 'static, V: 'static> RawNode for BranchHead<K, V> {
    fn assign(&mut self) -> Result<()> {
        Ok(())
    }
    fn push_message(&mut self, _: &dyn InputMessage) -> Result<()> {
        Err(Error::Worker(
            "a tee branch is fed by its tee, not by the consumer".into(),
        ))
    }
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }
    fn commit(&mut self, _: i64) -> Result<()> {
        Ok(())
    }
    fn abort(&mut self) {}
    fn revoke(&mut self) {}
    fn wall_clock_due(&self, _: Instant) -> bool {
        false
    }
    fn fire_wall_clock(&mut self, _: Instant) -> Result<()> {
        Ok(())
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Passes each record to the branch, then on; every signal goes to both.
struct Tee<K, V> {
    branch: Box<dyn Node<K, V>>,
    next: Box<dyn Node<K, V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Node<K, V> for Tee<K, V> {
    fn assign(&mut self) -> Result<()> {
        self.branch.assign()?;
        self.next.assign()
    }
    fn push(&mut self, record: crate::record::Record<K, V>) -> Result<()> {
        self.branch.push(record.clone())?;
        self.next.push(record)
    }
    fn barrier(&mut self) -> Result<()> {
        self.branch.barrier()?;
        self.next.barrier()
    }
    fn commit(&mut self, input_offset: i64) -> Result<()> {
        self.branch.commit(input_offset)?;
        self.next.commit(input_offset)
    }
    fn abort(&mut self) {
        self.branch.abort();
        self.next.abort();
    }
    fn revoke(&mut self) {
        self.branch.revoke();
        self.next.revoke();
    }
    fn wall_clock_due(&self, now: Instant) -> bool {
        self.branch.wall_clock_due(now) || self.next.wall_clock_due(now)
    }
    fn fire_wall_clock(&mut self, now: Instant) -> Result<()> {
        self.branch.fire_wall_clock(now)?;
        self.next.fire_wall_clock(now)
    }
}

/// Folds stages that read the same topic into one, whose tasks feed each message to every
/// chain (a topic is one subscription and one task per partition). The first stage keeps
/// its place.
pub(crate) fn combine_stages(stages: Vec<Stage>) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::with_capacity(stages.len());
    for stage in stages {
        let Some(same) = out.iter_mut().find(|s| s.input == stage.input) else {
            out.push(stage);
            continue;
        };
        let (first, second) = (same.build.clone(), stage.build);
        same.build = Arc::new(move |task| {
            Ok(Box::new(SharedInput(vec![first(task)?, second(task)?])) as Box<dyn RawNode>)
        });
        same.queryable.extend(stage.queryable);
        if same.copartitioned_with.is_none() {
            same.copartitioned_with = stage.copartitioned_with;
        }
    }
    out
}

/// Several chains of one input: each gets every message and every signal.
struct SharedInput(Vec<Box<dyn RawNode>>);

impl RawNode for SharedInput {
    fn assign(&mut self) -> Result<()> {
        self.0.iter_mut().try_for_each(|c| c.assign())
    }
    fn push_message(&mut self, m: &dyn InputMessage) -> Result<()> {
        self.0.iter_mut().try_for_each(|c| c.push_message(m))
    }
    fn barrier(&mut self) -> Result<()> {
        self.0.iter_mut().try_for_each(|c| c.barrier())
    }
    fn commit(&mut self, input_offset: i64) -> Result<()> {
        self.0.iter_mut().try_for_each(|c| c.commit(input_offset))
    }
    fn abort(&mut self) {
        self.0.iter_mut().for_each(|c| c.abort());
    }
    fn revoke(&mut self) {
        self.0.iter_mut().for_each(|c| c.revoke());
    }
    fn wall_clock_due(&self, now: Instant) -> bool {
        self.0.iter().any(|c| c.wall_clock_due(now))
    }
    fn fire_wall_clock(&mut self, now: Instant) -> Result<()> {
        self.0.iter_mut().try_for_each(|c| c.fire_wall_clock(now))
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
