//! A worker whose group coordinator goes down in the middle of a transaction keeps going,
//! on librdkafka's mock cluster.
//!
//! **Nothing here is about exactly-once** (the mock cluster does not honour aborted
//! transactions or transactional offset commits; the real-broker tests check that). It is
//! about liveness: librdkafka's `send_offsets_to_transaction` does not honour its timeout
//! while the group coordinator is unreachable (librdkafka #5456, #5511: the coordinator
//! request's deadline is never checked) and blocks the worker forever. The runtime makes the
//! call on a thread of its own and, past the timeout, gives the producer up and recovers in
//! place (`Error::TransactionCallHung`). Seen on a real 3-node cluster, where the node that
//! coordinated the group was SIGKILLed (`tests/cluster.rs`).

use exactly_framework::{Config, Pipeline, Runtime};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INPUT: &str = "coord-down-in";
const OUTPUT: &str = "coord-down-out";
const GROUP: &str = "coord-down";
/// The broker that coordinates the group and is taken down.
const COORDINATOR: i32 = 2;

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < give_up, "{what} within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_group_coordinator_lost_during_send_offsets_makes_the_worker_recover_not_hang() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let mock = MockCluster::new(3).expect("mock cluster");
    for topic in [INPUT, OUTPUT] {
        mock.create_topic(topic, 2, 1).expect("topic");
        for p in 0..2 {
            mock.partition_leader(topic, p, Some(1)).expect("leader");
        }
    }
    mock.coordinator(MockCoordinator::Group(GROUP.into()), COORDINATOR)
        .expect("group coordinator");
    let brokers = mock.bootstrap_servers();

    // Input keeps arriving, so that the worker keeps committing.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stop, brokers) = (stop.clone(), brokers.clone());
        std::thread::spawn(move || {
            let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()
                .expect("producer");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = i.to_string();
                let _ = p.send(
                    BaseRecord::<str, str>::to(INPUT)
                        .payload(&v)
                        .partition((i % 2) as i32),
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = p.flush(Duration::from_secs(5));
        })
    };

    let config = Config::new(GROUP, &brokers)
        .with_state_dir(
            std::env::temp_dir().join(format!("exactly-coord-down-{}", std::process::id())),
        )
        .with_session_timeout(Duration::from_secs(6))
        .with_consumer_property("heartbeat.interval.ms", "500");
    let mut config = config;
    config.kafka_call_timeout_ms = 2_000;
    config.startup_timeout_ms = 30_000;
    let worker = Runtime::new(config)
        .spawn(Pipeline::copy(INPUT, OUTPUT))
        .expect("worker");
    let started = Instant::now();
    wait_for("the worker commits", Duration::from_secs(60), || {
        worker.stats().commits >= 3
    });
    eprintln!("first commits after {:?}", started.elapsed());

    mock.broker_down(COORDINATOR).expect("coordinator down");
    let down = Instant::now();
    wait_for(
        "the worker recovers in place once its transactional call is stuck",
        Duration::from_secs(40),
        || worker.stats().recoveries >= 1 || worker.is_finished(),
    );
    assert!(
        !worker.is_finished(),
        "the worker stopped instead of recovering: {:?}",
        worker.stats()
    );
    eprintln!(
        "recovered {:?} after the coordinator went down",
        down.elapsed()
    );

    mock.broker_up(COORDINATOR).expect("coordinator up");
    let commits = worker.stats().commits;
    wait_for("the worker commits again", Duration::from_secs(60), || {
        worker.stats().commits > commits + 3
    });
    eprintln!(
        "commits again {:?} after the coordinator went down",
        down.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    worker.stop();
    worker.join().expect("the worker ends cleanly");
}
