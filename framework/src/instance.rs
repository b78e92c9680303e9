//! A worker's place on its host: a directory under `state_dir`, locked while the worker
//! runs, holding its local state store and the transactional id it keeps across restarts.
//!
//! - With `group_instance_id` (static membership): `{state_dir}/{application_id}/{instance}`.
//!   A second worker with the same id on this host is refused at start, with a message.
//! - Without: the first free slot `{state_dir}/{application_id}/worker-{n}`. Two workers
//!   with one configuration (two `spawn`s in one process, two processes started in one
//!   directory) take two slots instead of colliding, and a restarted worker takes a free
//!   slot — its own, when it restarts alone.
//! - The transactional id is `{application_id}-{instance}` with static membership;
//!   otherwise it is generated once and kept in the slot (`transactional.id`), never derived
//!   from a pid or a clock: a worker that takes the slot of a crashed one fences that one's
//!   open transaction at `init_transactions`, instead of leaving every partition it wrote
//!   stuck behind it until the transaction times out.
//!
//! The lock is an advisory file lock (`flock`) on `{dir}/LOCK`, which also holds the
//! holder's pid for the message a refused worker prints.

use crate::config::Config;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// How many slots a host may hold for one application without static membership.
const MAX_SLOTS: usize = 1024;

/// This worker's directory, held locked for as long as the value lives.
#[derive(Debug)]
pub(crate) struct Instance {
    dir: PathBuf,
    transactional_id: String,
    _lock: File,
}

impl Instance {
    /// Takes this worker's directory (see the module doc).
    ///
    /// # Errors
    /// [`Error::Config`] (`state_dir`) when the directory of this `group_instance_id` is
    /// held by another worker, or every slot is; [`Error::State`] when the directory cannot
    /// be created or locked.
    pub(crate) fn acquire(config: &Config) -> Result<Instance> {
        let app_dir = config.state_dir.join(&config.application_id);
        match &config.group_instance_id {
            Some(id) => {
                let dir = app_dir.join(id);
                match try_lock(&dir)? {
                    Ok(lock) => Ok(Instance {
                        dir,
                        transactional_id: format!("{}-{id}", config.application_id),
                        _lock: lock,
                    }),
                    Err(holder) => Err(Error::config(
                        "state_dir",
                        format!(
                            "{} (group_instance_id `{id}`) is in use by another worker on this host{holder}: \
                             each worker needs its own group_instance_id",
                            dir.display()
                        ),
                    )),
                }
            }
            None => {
                for n in 0..MAX_SLOTS {
                    let dir = app_dir.join(format!("worker-{n}"));
                    if let Ok(lock) = try_lock(&dir)? {
                        let transactional_id = kept_transactional_id(&dir, config)?;
                        return Ok(Instance {
                            dir,
                            transactional_id,
                            _lock: lock,
                        });
                    }
                }
                Err(Error::config(
                    "state_dir",
                    format!(
                        "all {MAX_SLOTS} worker slots under {} are in use",
                        app_dir.display()
                    ),
                ))
            }
        }
    }

    /// The directory (the local state store lives in `store/` below it).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The transactional id of this worker's producer.
    pub(crate) fn transactional_id(&self) -> &str {
        &self.transactional_id
    }
}

/// Every instance directory of `application_id` under `state_dir` (stopped or running).
pub(crate) fn all_dirs(state_dir: &Path, application_id: &str) -> Result<Vec<PathBuf>> {
    let app_dir = state_dir.join(application_id);
    let entries = std::fs::read_dir(&app_dir).map_err(|e| Error::State {
        op: "inspect",
        message: format!("{}: {e}", app_dir.display()),
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("LOCK").exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Locks `dir/LOCK` (creating both); `Ok(Err(holder))` when another worker holds it.
fn try_lock(dir: &Path) -> Result<std::result::Result<File, String>> {
    let state_error = |e: std::io::Error| Error::State {
        op: "lock",
        message: format!("{}: {e}", dir.display()),
    };
    std::fs::create_dir_all(dir).map_err(state_error)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("LOCK"))
        .map_err(state_error)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(state_error)?;
            file.rewind().map_err(state_error)?;
            writeln!(file, "{}", std::process::id()).map_err(state_error)?;
            Ok(Ok(file))
        }
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            Ok(Err(if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            }))
        }
        Err(TryLockError::Error(e)) => Err(state_error(e)),
    }
}

/// The transactional id kept in a slot, generated and stored on first use.
fn kept_transactional_id(dir: &Path, config: &Config) -> Result<String> {
    let path = dir.join("transactional.id");
    let prefix = format!("{}-", config.application_id);
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if id.starts_with(&prefix) && id.len() > prefix.len() {
            return Ok(id.to_string());
        }
    }
    let id = format!("{prefix}{:016x}", random_u64());
    let tmp = dir.join("transactional.id.tmp");
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, format!("{id}\n"))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::State {
        op: "keep the transactional id",
        message: format!("{}: {e}", path.display()),
    })?;
    Ok(id)
}

/// 64 random bits from the standard library's per-process random hash keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config::new("app", "127.0.0.1:1").with_state_dir(dir)
    }

    #[test]
    fn slots_are_taken_in_order_and_keep_their_transactional_id() {
        let dir = std::env::temp_dir().join(format!("exactly-instance-{}", random_u64()));
        let a = Instance::acquire(&config(&dir)).unwrap();
        let b = Instance::acquire(&config(&dir)).unwrap();
        assert_eq!(a.dir(), dir.join("app/worker-0"));
        assert_eq!(b.dir(), dir.join("app/worker-1"));
        assert_ne!(a.transactional_id(), b.transactional_id());
        assert!(a.transactional_id().starts_with("app-"));
        let kept = a.transactional_id().to_string();
        drop(a);
        // A restart takes the free slot, and with it the crashed worker's id.
        let again = Instance::acquire(&config(&dir)).unwrap();
        assert_eq!(again.dir(), dir.join("app/worker-0"));
        assert_eq!(again.transactional_id(), kept);
        assert_eq!(all_dirs(&dir, "app").unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_static_instance_is_held_by_one_worker() {
        let dir = std::env::temp_dir().join(format!("exactly-instance-{}", random_u64()));
        let c = config(&dir).with_group_instance_id("w0");
        let first = Instance::acquire(&c).unwrap();
        assert_eq!(first.transactional_id(), "app-w0");
        let err = Instance::acquire(&c).unwrap_err().to_string();
        assert!(
            err.contains("(group_instance_id `w0`) is in use by another worker on this host (pid ")
                && err.contains("each worker needs its own group_instance_id"),
            "{err}"
        );
        drop(first);
        assert!(Instance::acquire(&c).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
