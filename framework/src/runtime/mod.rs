//! Running pipelines: [`Runtime`] starts workers; each is one member of the consumer group.
//!
//! Wiring only: the worker loop lives in `worker`, the group consumer in `consumer`, a task
//! in `task`; the commit protocol in [`commit`](crate::commit), output in
//! [`producer`](crate::producer).

pub(crate) mod consumer;
pub(crate) mod task;
pub(crate) mod worker;

pub use crate::observability::{Stats, StatsSnapshot};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Runs pipelines with one configuration.
///
/// ```no_run
/// use exactly_framework::{Config, Pipeline, Runtime};
/// # async fn run() -> exactly_framework::Result<()> {
/// let config = Config::new("copier", "127.0.0.1:9092").with_env()?;
/// Runtime::new(config).run(Pipeline::copy("in", "out")).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    config: Config,
}

impl Runtime {
    /// A runtime for `config` (validated when a worker starts).
    pub fn new(config: Config) -> Self {
        Runtime { config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts one worker on its own thread and returns at once. The worker takes its
    /// directory under `state_dir` first (see [`Config::state_dir`]).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, or when another worker on this host
    /// holds this worker's directory (the same `group_instance_id`). Later errors (missing
    /// topics, an unreachable broker, fencing) are returned by [`Worker::join`] /
    /// [`Worker::wait`].
    pub fn spawn(&self, pipeline: Pipeline) -> Result<Worker> {
        self.config.validate()?;
        let instance = crate::instance::Instance::acquire(&self.config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let (query_server, queries) = start_query_server(&self.config)?;
        let (config, s, st) = (self.config.clone(), stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(format!("exactly-worker-{}", self.config.application_id))
            .spawn(move || worker::supervise(config, pipeline, instance, s, st, queries))
            .map_err(|e| Error::Worker(format!("cannot start the worker thread: {e}")))?;
        Ok(Worker {
            stop,
            stats,
            thread: Some(thread),
            query_server,
        })
    }

    /// Runs [`Config::workers`] workers (one by default) until SIGINT or SIGTERM, then
    /// each commits what it has and leaves the group.
    ///
    /// # Errors
    /// As [`Runtime::spawn`] and [`Worker::wait`].
    pub async fn run(self, pipeline: Pipeline) -> Result<()> {
        let shutdown = shutdown_signal();
        self.run_until(pipeline, shutdown).await
    }

    /// Runs [`Config::workers`] workers until `shutdown` completes or one of them fails;
    /// then the others are stopped (each commits what it has and leaves the group).
    ///
    /// # Errors
    /// As [`Runtime::spawn`] and [`Worker::wait`]: the first error a worker ended with.
    pub async fn run_until(
        self,
        pipeline: Pipeline,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        if self.config.workers <= 1 {
            return self.spawn(pipeline)?.wait_until(shutdown).await.map(drop);
        }
        let mut workers = Vec::new();
        for _ in 0..self.config.workers {
            workers.push(self.spawn(pipeline.clone())?);
        }
        let stops: Vec<Arc<AtomicBool>> = workers.iter().map(|w| w.stop.clone()).collect();
        let stop_all = || stops.iter().for_each(|s| s.store(true, Ordering::Relaxed));
        let mut waits = tokio::task::JoinSet::new();
        for w in workers {
            waits.spawn(w.wait());
        }
        let joined = |r: std::result::Result<Result<()>, tokio::task::JoinError>| {
            r.unwrap_or_else(|e| Err(Error::Worker(format!("join failed: {e}"))))
        };
        let mut first = tokio::select! {
            ended = waits.join_next() => {
                tracing::warn!("a worker ended: stopping the others");
                ended.map_or(Ok(()), joined)
            }
            () = shutdown => {
                tracing::info!("shutdown requested: committing and leaving the group");
                Ok(())
            }
        };
        stop_all();
        while let Some(ended) = waits.join_next().await {
            let ended = joined(ended);
            if first.is_ok() {
                first = ended;
            }
        }
        first
    }
}

/// The worker's query server, when the configuration asks for one.
#[cfg(feature = "query")]
fn start_query_server(
    config: &Config,
) -> Result<(Option<QueryServer>, Option<worker::WorkerQueries>)> {
    let registry = Arc::new(crate::state::queryable::QueryRegistry::default());
    let server = crate::query::server::start(config, registry.clone())?;
    let queries = server.as_ref().map(|s| worker::WorkerQueries {
        registry,
        advertised: s.advertised.clone(),
    });
    Ok((server, queries))
}

/// Without the `query` feature a configured query server is an error.
#[cfg(not(feature = "query"))]
fn start_query_server(
    config: &Config,
) -> Result<(Option<QueryServer>, Option<worker::WorkerQueries>)> {
    match config.query_server {
        Some(_) => Err(Error::config(
            "query_server",
            "exactly-framework was built without its `query` feature",
        )),
        None => Ok((None, None)),
    }
}

#[cfg(feature = "query")]
use crate::query::server::QueryServer;
/// Without the `query` feature there is never a server.
#[cfg(not(feature = "query"))]
#[derive(Debug)]
struct QueryServer {
    bound: std::net::SocketAddr,
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed when this function is called, not when the future is first
/// polled: a signal that arrives while the worker is still starting is not lost (and does
/// not kill the process with the default action). Call it from within a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A running worker: one consumer-group member with its own thread.
#[derive(Debug)]
pub struct Worker {
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<Result<()>>>,
    /// Serves queries while the worker runs (stopped with it).
    query_server: Option<QueryServer>,
}

impl Worker {
    /// Asks the worker to commit what it has, leave the group and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The worker's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The address the worker's query server listens on, if it has one (see
    /// [`Config::query_server`]; useful with port 0).
    pub fn query_address(&self) -> Option<std::net::SocketAddr> {
        self.query_server.as_ref().map(|s| s.bound)
    }

    /// Whether the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Blocks until the worker ends.
    ///
    /// # Errors
    /// The error that stopped the worker. An error the worker would have recovered from in
    /// place, met once [`stop`](Worker::stop) was asked for, is not returned: nothing of the
    /// cycle it dropped was committed.
    pub fn join(mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(Error::Worker("the worker thread panicked".into()))),
            None => Ok(()),
        }
    }

    /// Waits until the worker ends, or until `shutdown` completes — then asks it to commit,
    /// leave the group and stop, and waits for that. Returns its final counters.
    ///
    /// # Errors
    /// The error that stopped the worker.
    pub async fn wait_until(self, shutdown: impl Future<Output = ()>) -> Result<StatsSnapshot> {
        let (stop, stats) = (self.stop.clone(), self.stats.clone());
        let done = self.wait();
        tokio::pin!(done);
        tokio::select! {
            result = &mut done => result?,
            () = shutdown => {
                tracing::info!("shutdown requested: committing and leaving the group");
                stop.store(true, Ordering::Relaxed);
                done.await?
            }
        }
        Ok(stats.snapshot())
    }

    /// Waits for the worker to end without blocking the async runtime.
    ///
    /// # Errors
    /// The error that stopped the worker.
    pub async fn wait(self) -> Result<()> {
        tokio::task::spawn_blocking(move || self.join())
            .await
            .unwrap_or_else(|e| Err(Error::Worker(format!("join failed: {e}"))))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
