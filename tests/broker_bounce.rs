//! The only broker goes away — stopped cleanly, later SIGKILLed — for longer than the
//! transaction timeout, and comes back. The workers stay up (they recover in place: the
//! coordinator aborted their open transactions and bumped their producers' epochs), and
//! the output is exact: read_committed shows every input record once, in partition order.
//!
//! This test restarts the local broker of `scripts/kafka`, so it is a test binary of its
//! own (cargo runs test binaries one after another). With `KAFKA_BROKERS` set it is skipped:
//! it cannot restart a cluster it did not start.

mod common;

use common::copy_check::*;
use common::*;
use exactly::{Config, Pipeline, Runtime};
use std::time::{Duration, Instant};

/// How long the broker stays away: longer than the workers' transaction timeout. This is
/// the fault under test, not a synchronisation.
const OUTAGE: Duration = Duration::from_secs(8);

#[test]
fn workers_ride_through_a_broker_stop_and_a_broker_kill_and_the_output_is_exact() {
    if std::env::var_os("KAFKA_BROKERS").is_some() {
        eprintln!("skipped: KAFKA_BROKERS points at a cluster this test cannot restart");
        return;
    }
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "bounce-in", 4);
    let output = new_topic(&b, "bounce-out", 4);
    let group = unique_name("bounce");
    // About 40 s of live input at 2,000 records/s.
    let feeder = Feeder::start(&b, &input, 4, 80_000, 2_000);
    let config = Config::new(&group, &b)
        .with_session_timeout(Duration::from_secs(10))
        .with_transaction_timeout(Duration::from_secs(5));
    let runtime = Runtime::new(config);
    let workers = [
        runtime.spawn(Pipeline::copy(&input, &output)).unwrap(),
        runtime.spawn(Pipeline::copy(&input, &output)).unwrap(),
    ];
    let committed_some = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        let start: u64 = workers.iter().map(|w| w.stats().commits).sum();
        while workers.iter().map(|w| w.stats().commits).sum::<u64>() < start + 5 {
            assert!(
                workers.iter().all(|w| !w.is_finished()),
                "a worker stopped {what}"
            );
            assert!(Instant::now() < deadline, "no commits {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    committed_some("before the broker went away");

    local_broker("stop");
    std::thread::sleep(OUTAGE);
    local_broker("start");
    committed_some("after the broker's clean restart");

    local_broker("kill");
    std::thread::sleep(OUTAGE);
    local_broker("start");
    committed_some("after the broker was killed and restarted");

    let fed = feeder.join();
    let refs: Vec<&exactly::Worker> = workers.iter().collect();
    wait_until_committed_by(&b, &group, &input, Duration::from_secs(120), &refs);
    let recoveries: u64 = workers.iter().map(|w| w.stats().recoveries).sum();
    for w in workers {
        w.stop();
        w.join().expect("a worker stopped with an error");
    }
    let report = compare_copy(&b, &input, &output);
    eprintln!("{report:?}; {recoveries} recoveries");
    assert_eq!(report.input as u64, fed);
    assert!(report.is_exact(), "{report:?}");
    delete_topic(&b, &[&input, &output]).unwrap();
}
