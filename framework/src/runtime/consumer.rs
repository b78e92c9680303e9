//! Input: the worker's group consumer.

use crate::config::{Config, Guarantee};
use crate::error::{Error, KafkaOp, Result};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};

/// The consumer's `heartbeat.interval.ms` unless the user sets it (or a third of the session
/// timeout, if smaller). A member learns that its group rebalances from a heartbeat's answer,
/// and librdkafka's main thread sends a pending JoinGroup only when a timer (the heartbeat's)
/// wakes it; a cooperative rebalance needs two rounds. With librdkafka's 3 s default a
/// rebalance paused moved partitions for seconds; with 500 ms, a leave paused them 1.1–1.2 s;
/// with 100 ms, 0.2 s (`cargo bench --bench rebalance`, docs/benchmarks.md). The cost is ten
/// small requests a second per member to the group coordinator.
pub(crate) const HEARTBEAT_INTERVAL_MS: u64 = 100;

/// Builds the worker's consumer: manual offsets, `read_committed`, the configured group and
/// assignment strategy; with a query server at `query_address`, a client id that carries
/// it to the other members (see `query::directory`).
///
/// # Errors
/// [`Error::Kafka`] when librdkafka rejects the configuration.
pub(crate) fn create_consumer<C: ConsumerContext>(
    config: &Config,
    context: C,
    query_address: Option<&str>,
) -> Result<BaseConsumer<C>> {
    let mut c = config.client_config(true)?;
    let user_set = |k: &str| config.kafka.contains_key(k) || config.kafka_consumer.contains_key(k);
    if let Some(address) = query_address {
        let base = config
            .kafka_consumer
            .get("client.id")
            .or_else(|| config.kafka.get("client.id"));
        c.set(
            "client.id",
            crate::query::directory::client_id(base.map(String::as_str), address),
        );
    }
    c.set("group.id", &config.application_id)
        .set("isolation.level", "read_committed")
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        .set("enable.partition.eof", "false");
    if !user_set("auto.offset.reset") {
        // A partition without a committed offset starts at its beginning.
        c.set("auto.offset.reset", "earliest");
    }
    let classic = c
        .get("group.protocol")
        .is_none_or(|p| p.eq_ignore_ascii_case("classic"));
    if classic {
        // Under KIP-848 (`group.protocol=consumer`) the broker owns these settings.
        c.set(
            "partition.assignment.strategy",
            config.assignment_strategy(),
        )
        .set("session.timeout.ms", config.session_timeout_ms.to_string());
    }
    if classic && !user_set("heartbeat.interval.ms") {
        c.set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3)
                .min(HEARTBEAT_INTERVAL_MS)
                .to_string(),
        );
    }
    if !user_set("queued.min.messages") {
        // librdkafka prefetches up to 100,000 messages per partition by default; its
        // per-message overhead is not counted in queued.max.messages.kbytes, so with short
        // records most of a worker's memory was prefetch. Measured (`--bench compare`):
        // peak RSS word count 142 -> 122 MiB, copy 104 -> 66 MiB, throughput unchanged.
        c.set("queued.min.messages", "10000");
    }
    if !user_set("fetch.queue.backoff.ms") {
        // librdkafka stops fetching for this long (default 1000 ms) once its queue holds
        // queued.min.messages; one fetch of small records does that, and a worker that
        // drains the queue in 200 ms then idles 800 ms. Measured: the copy ran at a third
        // of its speed.
        c.set(
            "fetch.queue.backoff.ms",
            crate::config::FETCH_QUEUE_BACKOFF_MS,
        );
    }
    if !config.kafka.contains_key("statistics.interval.ms")
        && !config.kafka_consumer.contains_key("statistics.interval.ms")
    {
        // Feeds the per-partition lag gauge.
        c.set("statistics.interval.ms", "5000");
    }
    match config.guarantee {
        Guarantee::ExactlyOnce | Guarantee::AtLeastOnce => {
            c.set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false");
        }
        Guarantee::AutoCommit => {
            c.set("enable.auto.commit", "true")
                .set("enable.auto.offset.store", "true");
        }
    }
    if let Some(id) = &config.group_instance_id {
        c.set("group.instance.id", id);
    }
    c.create_with_context(context)
        .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::DefaultConsumerContext;

    #[test]
    fn the_kip_848_group_protocol_gets_no_classic_only_settings() {
        // librdkafka refuses `session.timeout.ms`, `heartbeat.interval.ms` and
        // `partition.assignment.strategy` at client creation under `group.protocol=consumer`
        // (no broker is contacted here).
        let config = Config::new("kip-848", "127.0.0.1:1")
            .with_consumer_property("group.protocol", "consumer");
        if let Err(e) = create_consumer(&config, DefaultConsumerContext, None) {
            panic!("group.protocol=consumer was refused: {e}");
        }
        let classic = Config::new("classic", "127.0.0.1:1");
        assert!(create_consumer(&classic, DefaultConsumerContext, None).is_ok());
    }
}
