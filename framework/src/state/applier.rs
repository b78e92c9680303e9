//! Commit step 5 off the processing thread: a committed overlay is applied to the store by a
//! thread of the worker's while the next cycle runs.
//!
//! Applying a cycle's overlay to the store took most of a keyed count's commit (measured with
//! `cargo bench --bench state`: 113 ms of a 182 ms commit for ~12k keys), and processing
//! stood still meanwhile. With a changelog, the apply is only a local cache of what the
//! changelog already holds (a lost apply leaves an older checkpoint, and restore replays the
//! changelog from it), so it need not finish before the next cycle starts:
//!
//! - the committed overlay becomes an [`InFlight`] layer that reads see between the new
//!   overlay and the store, until the applier has written it (with its checkpoint, in one
//!   batch, as before);
//! - a state has at most one layer in flight: its next commit waits for the previous
//!   apply, so a tree's batches land in commit order and memory stays bounded;
//! - a state that is closed (revoked, or its worker stopping or recovering) waits for its
//!   layer, so whoever opens the tree next finds it applied.
//!
//! Without a changelog the local store is all there is, and step 5 stays synchronous
//! (followed by one fsync per cycle, see [`StateManager::flush`](super::manager)).

use super::store::{self, Checkpoint, PreparedBatch};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

/// Changes to a state: encoded key → value, `None` deleted.
pub(crate) type Layer = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Whether an apply has finished, and how.
#[derive(Default)]
struct Done {
    /// `None` while the apply is pending.
    outcome: Mutex<Option<std::result::Result<(), String>>>,
    finished: Condvar,
}

impl Done {
    fn finish(&self, outcome: Result<()>) {
        let mut o = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        *o = Some(outcome.map_err(|e| e.to_string()));
        self.finished.notify_all();
    }
}

/// A committed layer on its way to the store.
pub(crate) struct InFlight {
    /// What was committed: readable until (and after) it is in the store.
    pub(crate) layer: Arc<Layer>,
    done: Arc<Done>,
}

impl InFlight {
    /// Waits until the layer is in the store.
    ///
    /// # Errors
    /// [`Error::State`] when the store refused the batch.
    pub(crate) fn wait(&self) -> Result<()> {
        let mut outcome = self.done.outcome.lock().unwrap_or_else(|p| p.into_inner());
        while outcome.is_none() {
            outcome = self
                .done
                .finished
                .wait(outcome)
                .unwrap_or_else(|p| p.into_inner());
        }
        match outcome.as_ref() {
            Some(Err(message)) => Err(Error::State {
                op: "apply batch",
                message: message.clone(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
impl InFlight {
    /// A layer whose apply never finishes (tests of what reads see meanwhile).
    pub(crate) fn never_applied(layer: Layer) -> Self {
        InFlight {
            layer: Arc::new(layer),
            done: Arc::new(Done::default()),
        }
    }
}

struct Job {
    tree: store::Tree,
    layer: Arc<Layer>,
    checkpoint: Checkpoint,
    done: Arc<Done>,
}

/// The worker's applier thread (`exactly-state-apply`); cloned into every state it serves.
/// The thread ends when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Applier {
    jobs: mpsc::Sender<Job>,
}

impl Applier {
    /// Starts the thread.
    ///
    /// # Errors
    /// [`Error::State`] when the thread cannot be spawned.
    pub(crate) fn start() -> Result<Applier> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("exactly-state-apply".into())
            .spawn(move || {
                for job in queue {
                    let applied = PreparedBatch::from_layer(&job.layer, job.checkpoint)
                        .and_then(|batch| batch.apply(&job.tree));
                    job.done.finish(applied);
                }
            })
            .map_err(|e| Error::State {
                op: "start the applier",
                message: e.to_string(),
            })?;
        Ok(Applier { jobs })
    }

    /// Hands `layer` and `checkpoint` to the thread for `tree` (applies them here if the
    /// thread is gone).
    pub(crate) fn submit(
        &self,
        tree: &store::Tree,
        layer: Layer,
        checkpoint: Checkpoint,
    ) -> InFlight {
        let layer = Arc::new(layer);
        let done = Arc::new(Done::default());
        let job = Job {
            tree: tree.clone(),
            layer: layer.clone(),
            checkpoint,
            done: done.clone(),
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            let applied = PreparedBatch::from_layer(&job.layer, job.checkpoint)
                .and_then(|batch| batch.apply(&job.tree));
            job.done.finish(applied);
        }
        InFlight { layer, done }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store;

    #[test]
    fn a_submitted_layer_lands_in_the_store_with_its_checkpoint() {
        let temp = store::tests::TempStore::new("applier");
        let tree = temp.store.tree("t").unwrap();
        let applier = Applier::start().unwrap();
        let mut layer = Layer::new();
        layer.insert(b"a".to_vec(), Some(b"1".to_vec()));
        layer.insert(b"b".to_vec(), None);
        let cp = Checkpoint::now(7, 3);
        let in_flight = applier.submit(&tree, layer, cp);
        assert_eq!(
            in_flight.layer.get(&b"a".to_vec()),
            Some(&Some(b"1".to_vec()))
        );
        in_flight.wait().unwrap();
        assert_eq!(store::get(&tree, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store::checkpoint(&tree).unwrap(), Some(cp));
        // Without the thread the caller applies it.
        drop(applier);
        let (jobs, queue) = mpsc::channel();
        drop(queue);
        let gone = Applier { jobs };
        let mut layer = Layer::new();
        layer.insert(b"c".to_vec(), Some(b"2".to_vec()));
        gone.submit(&tree, layer, Checkpoint::now(8, 4))
            .wait()
            .unwrap();
        assert_eq!(store::get(&tree, b"c").unwrap(), Some(b"2".to_vec()));
    }
}
