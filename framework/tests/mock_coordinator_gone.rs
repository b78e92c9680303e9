//! A worker whose group coordinator leaves the cluster in the middle of its transactions
//! keeps committing once the group has a new coordinator, on librdkafka's mock cluster.
//!
//! **Nothing here is about exactly-once** (the mock cluster does not honour aborted
//! transactions or transactional offset commits; `tests/cluster.rs` kills a real node). It
//! is about liveness. librdkafka's `send_offsets_to_transaction` looks its group
//! coordinator up again only on a broker state change of its client (#5456: its timeout is
//! never checked). When the coordinator's node is gone from the cluster's metadata,
//! librdkafka drops that broker, and no state change may ever come (#5511): the call, and
//! the worker, block. The runtime's producer closes idle connections after 10 s
//! (`connections.max.idle.ms`), which is such a change: here the worker commits again about
//! 7 s after the group has its new coordinator. With librdkafka's default (0: idle
//! connections stay open) this test fails: no commit within 45 s.

use exactly_framework::{Config, Pipeline, Runtime};
use rdkafka::mocking::MockCoordinator;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INPUT: &str = "coord-gone-in";
const OUTPUT: &str = "coord-gone-out";
const GROUP: &str = "coord-gone";
/// The broker that coordinates the group, then leaves the cluster.
const OLD_COORDINATOR: i32 = 2;
/// The group's coordinator after that.
const NEW_COORDINATOR: i32 = 3;
/// How long the group has no coordinator: long enough for the worker's producer to learn
/// from its metadata that the old one is gone. This is the fault under test.
const NO_COORDINATOR: Duration = Duration::from_secs(4);

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < deadline, "{what} within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn a_group_coordinator_that_leaves_the_cluster_does_not_block_the_worker() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    // A client that hosts the mock cluster.
    let host: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "3")
        .create()
        .expect("mock cluster");
    let mock = host.client().mock_cluster().expect("mock cluster");
    for topic in [INPUT, OUTPUT] {
        mock.create_topic(topic, 2, 1).expect("topic");
        for p in 0..2 {
            mock.partition_leader(topic, p, Some(1)).expect("leader");
        }
    }
    mock.coordinator(MockCoordinator::Group(GROUP.into()), OLD_COORDINATOR)
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

    let mut config = Config::new(GROUP, &brokers)
        .with_state_dir(
            std::env::temp_dir().join(format!("exactly-coord-gone-{}", std::process::id())),
        )
        .with_session_timeout(Duration::from_secs(6))
        .with_consumer_property("heartbeat.interval.ms", "500")
        // Learn of the departed broker soon (on a real cluster the leader changes that
        // come with a lost node make clients refresh their metadata).
        .with_producer_property("topic.metadata.refresh.interval.ms", "1000");
    config.kafka_call_timeout_ms = 3_000;
    let worker = Runtime::new(config)
        .spawn(Pipeline::copy(INPUT, OUTPUT))
        .expect("worker");
    wait_for("the worker commits", Duration::from_secs(60), || {
        worker.stats().commits >= 3 || worker.is_finished()
    });
    assert!(!worker.is_finished(), "{:?}", worker.stats());

    // The coordinator's node leaves the cluster (gone from the metadata); the group has no
    // coordinator for a while, then a new one.
    let cluster = unsafe { rdkafka_sys::rd_kafka_handle_mock_cluster(host.client().native_ptr()) };
    let err = unsafe { rdkafka_sys::rd_kafka_mock_broker_decommission(cluster, OLD_COORDINATOR) };
    assert_eq!(
        err,
        rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    std::thread::sleep(NO_COORDINATOR);
    mock.coordinator(MockCoordinator::Group(GROUP.into()), NEW_COORDINATOR)
        .expect("new group coordinator");
    let commits = worker.stats().commits;
    let took = wait_for(
        "the worker commits again after the group has a new coordinator",
        Duration::from_secs(45),
        || worker.stats().commits > commits + 3 || worker.is_finished(),
    );
    assert!(
        !worker.is_finished(),
        "the worker stopped: {:?}",
        worker.stats()
    );
    eprintln!(
        "commits again {took:?} after the new coordinator; {:?}",
        worker.stats()
    );

    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    worker.stop();
    worker.join().expect("the worker ends cleanly");
}
