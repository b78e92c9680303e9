//! The examples the README tells users to run first, run end to end against the broker:
//! each must finish on its own, verify its output and say so. (`cargo test` builds them.)

mod common;

use common::copy_check::copier_binary;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs an example to its end (at most `deadline`); returns its stdout.
fn run_example(name: &str, args: &[&str], deadline: Duration) -> String {
    let bin = copier_binary().with_file_name(name);
    let mut child = Command::new(&bin)
        .args(args)
        .env("KAFKA_BROKERS", common::brokers())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(status.success(), "{name} failed ({status}):\n{stdout}");
            return stdout;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{name} did not finish within {deadline:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_word_count_of_the_quick_start_finishes_with_two_rebalances_and_verifies() {
    let out = run_example("wordcount", &[], Duration::from_secs(240));
    assert!(out.contains("verified: 12544 words, 0 wrong"), "{out}");
    assert!(out.contains("2 forced rebalances"), "{out}");
}

#[test]
fn the_copier_demo_copies_and_verifies() {
    let out = run_example("copier", &["--demo"], Duration::from_secs(240));
    assert!(out.contains("0 lost, 0 duplicated"), "{out}");
}

#[test]
fn the_windowed_word_count_verifies() {
    let out = run_example("windowed_wordcount", &[], Duration::from_secs(240));
    assert!(out.contains("0 wrong"), "{out}");
}

#[test]
fn the_payment_timeouts_example_flags_exactly_the_unpaid_orders() {
    let out = run_example("payment_timeouts", &[], Duration::from_secs(240));
    assert!(out.contains(" unpaid orders of 20000, 0 wrong"), "{out}");
}

#[test]
fn the_clicks_example_counts_one_input_two_ways() {
    let out = run_example("clicks", &[], Duration::from_secs(240));
    assert!(
        out.contains("verified: 2000 users, 8 countries, 0 wrong"),
        "{out}"
    );
}

#[test]
fn the_ad_attribution_example_joins_and_verifies() {
    let out = run_example("ad_attribution", &[], Duration::from_secs(240));
    assert!(
        out.contains("verified: 600 attributed clicks of 750, 0 wrong"),
        "{out}"
    );
}

#[test]
fn the_test_driver_example_counts_in_memory() {
    let out = run_example("test_driver", &[], Duration::from_secs(120));
    assert!(out.contains(", 0 wrong"), "{out}");
}

#[test]
fn the_chaos_check_example_is_exact_under_chaos() {
    let out = run_example("chaos_check", &[], Duration::from_secs(300));
    assert!(out.contains("exact under chaos: 3 kills, 2 joins"), "{out}");
}

#[test]
fn the_schemas_example_turns_avro_into_protobuf_exactly() {
    let out = run_example("schemas", &[], Duration::from_secs(240));
    assert!(out.contains("verified: 10000 totals, 0 wrong"), "{out}");
}

#[test]
fn the_guarantees_demonstrator_shows_exactly_once_exact() {
    let out = run_example("guarantees", &[], Duration::from_secs(600));
    assert!(
        out.contains("| ExactlyOnce | 30000 | 30000 | 0 | 0 |"),
        "{out}"
    );
    assert!(out.contains("| AutoCommit | 30000 |"), "{out}");
    assert!(out.contains("| AtLeastOnce | 30000 |"), "{out}");
}
