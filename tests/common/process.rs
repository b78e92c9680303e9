//! Child processes (examples run as workers) whose output goes to a log file, so a failing
//! test can show what the worker said.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A worker process with its stdout and stderr in `log`.
pub struct LoggedProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl LoggedProcess {
    /// Spawns `cmd` (RUST_LOG=info unless set) logging to `<tmp>/exactly-tests/<name>.log`.
    pub fn spawn(mut cmd: Command, name: &str) -> Self {
        let dir = std::env::temp_dir().join("exactly-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // `wait_started` needs the worker's `info` line whatever RUST_LOG says.
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        cmd.env(
            "RUST_LOG",
            format!("{filter},exactly_framework::runtime::worker=info"),
        );
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?} (built by `cargo test`): {e}"));
        LoggedProcess { child, log }
    }

    /// SIGKILL: no commit, no leave.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the worker logged `worker starting` (its signal handlers are installed
    /// by then: a SIGTERM sent earlier would kill it with the default action, as any
    /// process that has not started yet).
    pub fn wait_started(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("worker starting")
        {
            assert!(
                Instant::now() < deadline,
                "the worker did not start within 60 s; {}:\n{}",
                self.log.display(),
                self.tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `deadline` for the process to exit by itself; `None` if it still runs.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let give_up = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > give_up {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (once the worker has started) and wait for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.wait_started();
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        (status, self.tail(40))
    }

    /// SIGTERM, wait, and panic with the log's tail unless the exit status is 0.
    pub fn terminate_cleanly(self) {
        let log = self.log.clone();
        let (status, tail) = self.terminate();
        assert!(
            status.success(),
            "a worker did not stop cleanly on SIGTERM ({status}); {}, last lines:\n{tail}",
            log.display()
        );
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}
