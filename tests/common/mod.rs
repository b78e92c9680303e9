//! Shared by the integration tests: the broker, unique topics, readers (see
//! `exactly_testkit`), plus small test-only helpers.
#![allow(dead_code)]

pub mod copy_check;
pub mod corpus;
pub mod counting;
pub mod process;

pub use process::LoggedProcess;

pub use exactly_testkit::*;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;
use std::time::Duration;

/// The broker for this test binary (starting the local one if needed).
pub fn brokers() -> String {
    exactly_testkit::broker::require_broker()
}

/// A fresh topic with `partitions` partitions; returns its unique name.
pub fn new_topic(brokers: &str, prefix: &str, partitions: i32) -> String {
    let name = unique_name(prefix);
    create_topic(brokers, &name, partitions).expect("create topic");
    name
}

/// A transactional producer with a unique `transactional.id`, initialised.
pub fn transactional_producer(brokers: &str, transactional_id: &str) -> BaseProducer {
    use rdkafka::producer::Producer;
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "10000")
        .create()
        .expect("producer");
    p.init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    p
}

/// Generous deadline for reading a topic to its end.
pub const READ_DEADLINE: Duration = Duration::from_secs(60);

/// Waits until `worker` stops by itself and returns its error; panics when it is still
/// running after `deadline` or stops without an error.
pub fn stops_with_error(worker: exactly::Worker, deadline: Duration) -> exactly::Error {
    let give_up = std::time::Instant::now() + deadline;
    while !worker.is_finished() {
        if std::time::Instant::now() > give_up {
            let stats = worker.stats();
            worker.stop();
            let end = worker.join();
            panic!("the worker was still running after {deadline:?} (it should have stopped with an error); {stats:?}, then {end:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match worker.join() {
        Ok(()) => panic!("the worker stopped without an error"),
        Err(e) => e,
    }
}

/// Initialises tracing once (RUST_LOG controls it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Runs `scripts/kafka <command>` (`stop`, `kill`, `start`) on the local broker: for the
/// tests that take the broker away. Panics when it fails.
pub fn local_broker(command: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg(command)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka {command} failed: {status}");
}
