//! Keyed state in the local store with a changelog: restore on every assignment, crash between the
//! Kafka commit and the store apply, aborts in the middle of a cycle. Every test checks the
//! complete output — each key's running counts 1, 2, ..., n in order, once — and the final
//! committed state.

mod common;

use common::copy_check::copier_binary;
use common::counting::{Fixture, KEYS};
use common::*;
use exactly::framework::state::read_committed_state;
use exactly::framework::{Collector, Context, KeyedState, Operator, Record, StateDescriptor};
use exactly::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn state_moves_with_its_partition_and_returns_without_replay() {
    init_tracing();
    let mut f = Fixture::new("state-move");
    f.send(1000);
    let a1 = f.run_until_done("a", f.count_pipeline());
    assert_eq!(
        a1.restored_records, 0,
        "a fresh application has nothing to restore"
    );
    f.assert_state_exact("a", "count", "counts");

    // The partitions move to a worker with an empty state dir: rebuilt from the changelog.
    f.send(1000);
    let b1 = f.run_until_done("b", f.count_pipeline());
    assert_eq!(b1.restores, 2, "{b1:?}");
    assert!(b1.restored_records >= KEYS as u64, "{b1:?}");
    f.assert_state_exact("b", "count", "counts");

    // They return to the worker whose local checkpoint is current: zero replay.
    f.send(1000);
    let b2 = f.run_until_done("b", f.count_pipeline());
    assert_eq!((b2.restores, b2.restored_records), (2, 0), "{b2:?}");

    // They return to the first worker, two owners behind: it replays only what it missed.
    f.send(1000);
    let a2 = f.run_until_done("a", f.count_pipeline());
    assert!(
        a2.restored_records > 0 && a2.restored_records < b1.restored_records + 100 * KEYS as u64,
        "{a2:?}"
    );
    f.assert_state_exact("a", "count", "counts");
    f.assert_output_exact();
    f.cleanup();
}

#[test]
fn a_damaged_local_store_is_rebuilt_from_the_changelog() {
    init_tracing();
    let mut f = Fixture::new("state-damaged");
    f.send(1000);
    f.run_until_done("a", f.count_pipeline());
    f.assert_state_exact("a", "count", "counts");

    // Damage the worker's local store while it is stopped: its format marker no longer
    // reads, as after a disk fault or an incompatible version.
    let markers = files_named(&f.state_dir("a"), "version");
    assert!(
        !markers.is_empty(),
        "the test must find the store it damages"
    );
    for marker in &markers {
        std::fs::write(marker, b"damaged").unwrap();
    }
    f.send(1000);
    let again = f.run_until_done("a", f.count_pipeline());
    assert_eq!(again.restores, 2, "{again:?}");
    assert!(
        again.restored_records >= KEYS as u64,
        "both partitions rebuilt from their changelog: {again:?}"
    );
    f.assert_state_exact("a", "count", "counts");
    f.assert_output_exact();
    f.cleanup();
}

/// Every file named `name` under `dir`, at any depth.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if entry.file_name() == name {
                found.push(path);
            }
        }
    }
    found
}

/// Counts like `Count`, but fails once with a store error in the middle of a cycle, after
/// having written to its state: the cycle must be aborted and replayed.
struct FlakyCount {
    state: Option<KeyedState<Option<String>, u64>>,
    fail_at: u64,
    seen: u64,
}

impl Operator<String, String> for FlakyCount {
    type OutKey = String;
    type OutValue = u64;
    fn on_assign(&mut self, ctx: &mut Context) -> exactly::Result<()> {
        self.state = Some(ctx.keyed_state(&StateDescriptor::new("counts"))?);
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, String>,
        _: &mut Context,
        out: &mut dyn Collector<String, u64>,
    ) -> exactly::Result<()> {
        let state = self.state.as_ref().unwrap();
        let n = state.get(&r.key)?.unwrap_or(0) + 1;
        state.put(&r.key, &n)?;
        self.seen += 1;
        if self.seen == self.fail_at {
            return Err(exactly::Error::State {
                op: "test fault",
                message: "injected once".into(),
            });
        }
        out.collect(r.with_value(n))
    }
}

#[test]
fn an_abort_in_the_middle_of_a_cycle_leaves_state_and_output_exact() {
    init_tracing();
    let mut f = Fixture::new("state-abort");
    f.send(1000);
    let pipeline = Pipeline::from_topic_with_key(&f.input, Serde::string(), Serde::string())
        .apply("count", || FlakyCount {
            state: None,
            fail_at: 150,
            seen: 0,
        })
        .to_topic(&f.output, Serde::string(), Serde::json::<u64>());
    let stats = f.run_until_done("a", pipeline);
    assert!(
        stats.aborts >= 1,
        "the injected fault must abort a cycle: {stats:?}"
    );
    f.assert_state_exact("a", "count", "counts");
    f.assert_output_exact();
    f.cleanup();
}

fn custom_operator_binary() -> PathBuf {
    copier_binary().with_file_name("custom_operator")
}

/// The custom_operator example (a stateful keyed sum) as a worker process of `f`'s group.
fn keyed_sum_command(
    f: &Fixture,
    dir: &Path,
    instance: Option<&str>,
    commit_max_records: u32,
) -> Command {
    let mut cmd = Command::new(custom_operator_binary());
    cmd.args([
        "--brokers",
        &f.b,
        "--group",
        &f.group,
        "--input",
        &f.input,
        "--output",
        &f.output,
    ])
    .args(["--commit-max-records", &commit_max_records.to_string()])
    .arg("--state-dir")
    .arg(dir)
    .stdin(Stdio::null());
    if let Some(id) = instance {
        cmd.args(["--instance-id", id]);
    }
    cmd
}

/// A keyed-sum worker whose stdout (its final counters) the test reads.
fn keyed_sum_process(
    f: &Fixture,
    dir: &Path,
    crash_after_commits: Option<u32>,
) -> std::process::Child {
    let mut cmd = keyed_sum_command(f, dir, Some("w0"), 100);
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    if let Some(n) = crash_after_commits {
        cmd.env("EXACTLY_TEST_CRASH_AFTER_COMMITS", n.to_string());
    }
    cmd.spawn()
        .expect("spawn custom_operator (built by `cargo test`)")
}

#[test]
fn a_crash_between_commit_and_state_apply_replays_only_the_missing_cycle() {
    let mut f = Fixture::new("state-crash");
    f.send(1000);
    let dir = f.state_dir("p");
    // Commit 3 cycles of 100 records; the process dies right after the 3rd commit.
    let crashed = keyed_sum_process(&f, &dir, Some(3))
        .wait_with_output()
        .unwrap();
    assert!(
        !crashed.status.success(),
        "the fault point must kill the process"
    );

    let worker = keyed_sum_process(&f, &dir, None);
    common::copy_check::wait_until_committed(&f.b, &f.group, &f.input, Duration::from_secs(120));
    unsafe {
        libc::kill(worker.id() as i32, libc::SIGTERM);
    }
    let out = worker.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{line}");
    // "... N state restores replaying R changelog records"
    let replayed: u64 = line
        .split_whitespace()
        .rev()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {line}"));
    assert!(
        replayed > 0 && replayed <= KEYS as u64,
        "the restore must replay exactly the last cycle's changelog (at most one record per key), replayed {replayed}"
    );
    // The keyed sums of "1" are counts: the same exact checks apply.
    f.assert_output_exact();
    let sums: BTreeMap<String, i64> =
        read_committed_state(&f.state_dir("p"), &f.group, "keyed-sum", "sums").unwrap();
    let want: BTreeMap<String, i64> = f.sent.iter().map(|(k, n)| (k.clone(), *n as i64)).collect();
    assert_eq!(sums, want, "committed state of the restarted process");
    f.cleanup();
    let changelog = exactly::framework::state::changelog::topic_name(&f.group, "keyed-sum", "sums");
    let _ = delete_topic(&f.b, &[&changelog]);
}

#[test]
fn without_a_changelog_a_crash_after_commit_is_reported_at_restart() {
    let mut f = Fixture::new("state-nolog");
    f.send(1000);
    let dir = f.state_dir("p");
    // Commit 3 cycles of 100 records without a changelog; the process dies right after the
    // 3rd commit, so the local store misses a committed cycle that nothing can replay.
    let mut cmd = keyed_sum_command(&f, &dir, Some("w0"), 100);
    cmd.env("EXACTLY_STATE_CHANGELOG", "false")
        .env("EXACTLY_TEST_CRASH_AFTER_COMMITS", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let crashed = cmd.status().unwrap();
    assert!(!crashed.success(), "the fault point must kill the process");

    let mut cmd = keyed_sum_command(&f, &dir, Some("w0"), 100);
    cmd.env("EXACTLY_STATE_CHANGELOG", "false");
    let name = format!("{}-restart", f.group);
    let mut restarted = LoggedProcess::spawn(cmd, &name);
    let Some(status) = restarted.wait_exit(Duration::from_secs(60)) else {
        let tail = restarted.tail(20);
        restarted.kill();
        panic!("the restarted worker went on with a local state that misses a committed cycle:\n{tail}");
    };
    let log = std::fs::read_to_string(&restarted.log).unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("state_changelog") && log.contains("committed offset"),
        "the error must say what is wrong and what to do:\n{log}"
    );
    f.cleanup();
    let changelog = exactly::framework::state::changelog::topic_name(&f.group, "keyed-sum", "sums");
    let _ = delete_topic(&f.b, &[&changelog]);
}

fn keyed_sum_member(f: &Fixture, dir: &Path, instance: Option<&str>) -> LoggedProcess {
    let name = format!("{}-{}", f.group, dir.file_name().unwrap().to_string_lossy());
    LoggedProcess::spawn(keyed_sum_command(f, dir, instance, 500), &name)
}

#[test]
fn sigkill_rounds_with_rebalances_keep_state_and_output_exact() {
    let mut f = Fixture::new("state-kill");
    let mut rng = common::copy_check::Rng::from_time();
    let dirs: Vec<PathBuf> = (0..3).map(|i| f.state_dir(&format!("w{i}"))).collect();
    let mut members = [
        Some(keyed_sum_member(&f, &dirs[0], Some("w0"))),
        Some(keyed_sum_member(&f, &dirs[1], Some("w1"))),
    ];
    let mut floater: Option<LoggedProcess> = None;
    for round in 0..8 {
        f.send(2_500);
        // A random moment inside or between commits.
        std::thread::sleep(Duration::from_millis(200 + rng.below(1_500)));
        let victim = rng.below(2) as usize;
        if let Some(m) = members[victim].take() {
            m.kill();
        }
        members[victim] = Some(keyed_sum_member(
            &f,
            &dirs[victim],
            Some(&format!("w{victim}")),
        ));
        // A third member without static membership joins and leaves: real rebalances.
        match floater.take() {
            None => floater = Some(keyed_sum_member(&f, &dirs[2], None)),
            Some(fl) if round % 3 == 2 => fl.kill(),
            Some(fl) => fl.terminate_cleanly(),
        }
    }
    common::copy_check::wait_until_committed(&f.b, &f.group, &f.input, Duration::from_secs(180));
    for m in members.into_iter().flatten().chain(floater) {
        m.terminate_cleanly();
    }
    f.assert_output_exact();
    // A fresh worker rebuilds the whole state from the changelog: it must be exact.
    let fresh = f.state_dir("fresh");
    let p = keyed_sum_member(&f, &fresh, None);
    // Tasks start on their first record: a few more records make the fresh worker open
    // (and so restore) the state of every partition.
    f.send(40);
    common::copy_check::wait_until_committed(&f.b, &f.group, &f.input, Duration::from_secs(120));
    p.terminate_cleanly();
    let sums: BTreeMap<String, i64> =
        read_committed_state(&fresh, &f.group, "keyed-sum", "sums").unwrap();
    let want: BTreeMap<String, i64> = f.sent.iter().map(|(k, n)| (k.clone(), *n as i64)).collect();
    assert_eq!(sums, want, "state rebuilt from the changelog");
    f.assert_output_exact();
    f.cleanup();
    let changelog = exactly::framework::state::changelog::topic_name(&f.group, "keyed-sum", "sums");
    let _ = delete_topic(&f.b, &[&changelog]);
}

#[test]
fn a_misconfigured_changelog_topic_is_a_clear_error() {
    let mut f = Fixture::new("state-badlog");
    f.send(10);
    let changelog = exactly::framework::state::changelog::topic_name(&f.group, "count", "counts");
    // Wrong partition count.
    create_topic(&f.b, &changelog, 3).unwrap();
    let err = Runtime::new(f.config("a"))
        .spawn(f.count_pipeline())
        .unwrap()
        .join()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has 3 partitions but the input has 2"),
        "{err}"
    );
    delete_topic(&f.b, &[&changelog]).unwrap();
    // Not compacted (the broker may take a moment to forget the deleted topic).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = create_topic(&f.b, &changelog, 2) {
        assert!(std::time::Instant::now() < deadline, "{e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = Runtime::new(f.config("a"))
        .spawn(f.count_pipeline())
        .unwrap()
        .join()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cleanup.policy=delete; it must be compacted"),
        "{err}"
    );
    f.cleanup();
}
