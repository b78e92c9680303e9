//! Exactly-once across forced rebalances: two long-lived workers copy 200k records while a
//! third joins and leaves again and again. The `read_committed` output must equal the input,
//! partition by partition and in order: zero lost, zero duplicated.

mod common;

use common::copy_check::*;
use common::*;
use exactly::{Config, Pipeline, Runtime};
use std::time::{Duration, Instant};

#[test]
fn copy_is_exact_while_a_worker_joins_and_leaves() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "rebalance-in", 4);
    let output = new_topic(&b, "rebalance-out", 4);
    let group = unique_name("rebalance");
    let total = 200_000;
    let feeder = Feeder::start(&b, &input, 4, total, 25_000);

    let config = Config::new(&group, &b)
        .with_session_timeout(Duration::from_secs(6))
        .with_consumer_property("heartbeat.interval.ms", "500");
    let runtime = Runtime::new(config);
    let w1 = runtime.spawn(Pipeline::copy(&input, &output)).unwrap();
    let w2 = runtime.spawn(Pipeline::copy(&input, &output)).unwrap();

    // While the feed runs, a third worker joins and leaves every ~1.5 s.
    let started = Instant::now();
    let mut cycles = 0;
    while started.elapsed() < Duration::from_secs(8) || cycles < 3 {
        let w3 = runtime.spawn(Pipeline::copy(&input, &output)).unwrap();
        // Wait for the event "the newcomer got partitions", then let it work a little.
        let joined = Instant::now();
        while w3.stats().partitions == 0 && joined.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            w3.stats().partitions > 0,
            "the third worker never got a partition"
        );
        std::thread::sleep(Duration::from_millis(700));
        w3.stop();
        w3.join().expect("the joining worker failed");
        cycles += 1;
        eprintln!(
            "cycle {cycles} done at {:?} (join took {:?})",
            started.elapsed(),
            joined.elapsed()
        );
    }
    assert_eq!(feeder.join(), total);
    eprintln!("feed done at {:?}", started.elapsed());
    wait_until_committed_by(&b, &group, &input, Duration::from_secs(120), &[&w1, &w2]);
    eprintln!("all committed at {:?}", started.elapsed());
    let (s1, s2) = (w1.stats(), w2.stats());
    w1.stop();
    w2.stop();
    w1.join().unwrap();
    w2.join().unwrap();
    eprintln!("workers stopped at {:?}", started.elapsed());

    let report = compare_copy(&b, &input, &output);
    eprintln!("compared at {:?}", started.elapsed());
    eprintln!("join/leave cycles: {cycles}; worker 1: {s1:?}; worker 2: {s2:?}; {report:?}");
    assert!(
        s1.rebalances + s2.rebalances >= 2 * cycles as u64,
        "rebalances did not happen"
    );
    assert_eq!(report.input, total as usize);
    assert!(report.is_exact(), "{report:?}");
    delete_topic(&b, &[&input, &output]).unwrap();
}
