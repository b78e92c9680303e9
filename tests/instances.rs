//! Ten copies on ten machines (or two in one process) don't collide: each worker has its own
//! state directory, locked while it runs; a duplicate `group_instance_id` is named; and a
//! worker restarted without static membership fences its crashed predecessor's transaction.

mod common;

use common::copy_check::*;
use common::counting::Fixture;
use common::*;
use exactly::prelude::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn two_workers_in_one_process_share_a_state_dir_without_colliding() {
    init_tracing();
    let mut f = Fixture::new("instances-share");
    f.send(2000);
    // The same configuration twice: one state_dir, no group_instance_id.
    let first = Runtime::new(f.config("shared"))
        .spawn(f.count_pipeline())
        .unwrap();
    let second = Runtime::new(f.config("shared"))
        .spawn(f.count_pipeline())
        .unwrap();
    wait_until_committed_by(
        &f.b,
        &f.group,
        &f.input,
        Duration::from_secs(90),
        &[&first, &second],
    );
    first.stop();
    second.stop();
    first.join().unwrap();
    second.join().unwrap();
    f.assert_output_exact();
    f.cleanup();
}

#[test]
fn config_workers_runs_that_many_workers_in_one_process() {
    init_tracing();
    let mut f = Fixture::new("instances-workers");
    f.send(2000);
    let config = f.config("many").with_workers(2);
    let (b, group, input) = (f.b.clone(), f.group.clone(), f.input.clone());
    // Shut down once the group has committed everything (checked off the async runtime).
    let done = async move {
        tokio::task::spawn_blocking(move || {
            wait_until_committed(&b, &group, &input, Duration::from_secs(90))
        })
        .await
        .unwrap()
    };
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio
        .block_on(Runtime::new(config).run_until(f.count_pipeline(), done))
        .expect("both workers end cleanly");
    // Two workers, each in its own directory under the one state_dir.
    let app_dir = f.state_dir("many").join(&f.group);
    let workers = std::fs::read_dir(&app_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", app_dir.display()))
        .count();
    assert_eq!(workers, 2, "worker directories under {}", app_dir.display());
    f.assert_output_exact();
    f.cleanup();
}

#[test]
fn a_second_worker_with_the_same_instance_id_on_one_host_is_refused_at_start() {
    let f = Fixture::new("instances-lock");
    let config = f.config("one").with_group_instance_id("w0");
    let first = Runtime::new(config.clone())
        .spawn(f.count_pipeline())
        .unwrap();
    let err = match Runtime::new(config).spawn(f.count_pipeline()) {
        Err(e) => e,
        Ok(second) => stops_with_error(second, Duration::from_secs(30)),
    }
    .to_string();
    assert!(
        err.contains("is in use by another worker") && err.contains("group_instance_id `w0`"),
        "{err}"
    );
    first.stop();
    first.join().unwrap();
    f.cleanup();
}

#[test]
fn a_duplicate_instance_id_in_the_group_is_named() {
    init_tracing();
    let mut f = Fixture::new("instances-dup");
    f.send(100);
    // Two "hosts" (state dirs) with one group_instance_id: the later member replaces the
    // earlier one, which must say why instead of asking to be restarted.
    let first = Runtime::new(f.config("host1").with_group_instance_id("dup"))
        .spawn(f.count_pipeline())
        .unwrap();
    wait_until_committed_by(&f.b, &f.group, &f.input, Duration::from_secs(60), &[&first]);
    let second = Runtime::new(f.config("host2").with_group_instance_id("dup"))
        .spawn(f.count_pipeline())
        .unwrap();
    let err = stops_with_error(first, Duration::from_secs(60)).to_string();
    assert!(
        err.contains("group_instance_id `dup`") && err.contains("each worker needs its own"),
        "{err}"
    );
    second.stop();
    let _ = second.join();
    f.cleanup();
}

#[test]
fn a_worker_restarted_without_static_membership_fences_its_crashed_predecessor() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "instances-fence-in", 2);
    let output = new_topic(&b, "instances-fence-out", 2);
    let group = unique_name("instances-fence");
    let dir = std::env::temp_dir().join(unique_name("exactly-instances-fence"));
    produce(
        &b,
        &input,
        (0..2000).map(|i| (Some(i % 2), None::<&str>, format!("p{}-{i:08}", i % 2))),
    )
    .unwrap();
    // A transaction timeout of a minute: only fencing can end the crashed worker's
    // transaction sooner.
    let copier = |commit_interval_ms: u32| {
        let mut cmd = Command::new(copier_binary());
        cmd.args(["--brokers", &b, "--group", &group])
            .args(["--input", &input, "--output", &output])
            .args(["--commit-interval-ms", &commit_interval_ms.to_string()])
            .args(["--session-timeout-ms", "6000"])
            .env("EXACTLY_TRANSACTION_TIMEOUT_MS", "60000")
            .env("EXACTLY_STATE_DIR", &dir);
        cmd
    };
    let first = LoggedProcess::spawn(copier(60_000), &format!("{group}-first"));
    // It has written into its (first, still open) transaction: kill it there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while watermarks(&b, &output)
        .unwrap()
        .iter()
        .all(|(_, _, high)| *high == 0)
    {
        assert!(Instant::now() < deadline, "the first worker wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill();
    let killed_at = Instant::now();

    let second = LoggedProcess::spawn(copier(100), &format!("{group}-second"));
    wait_until_committed(&b, &group, &input, Duration::from_secs(60));
    // Readable to its end within 30 s of the kill: the open transaction was aborted by
    // fencing, not by its one-minute timeout.
    let left = Duration::from_secs(30).saturating_sub(killed_at.elapsed());
    if let Err(e) = read_to_end(&b, &output, Isolation::ReadCommitted, left) {
        panic!("the crashed worker's transaction still blocks the output: {e}");
    }
    second.terminate_cleanly();
    let report = compare_copy(&b, &input, &output);
    assert!(report.is_exact(), "{report:?}");
    delete_topic(&b, &[&input, &output]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
