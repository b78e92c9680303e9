//! Input: the group consumer and the checks made before a worker subscribes.

use crate::config::{Config, Guarantee};
use crate::error::{Error, KafkaOp, Result};
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// Builds the worker's consumer: manual offsets, `read_committed`, the configured group and
/// assignment strategy.
///
/// # Errors
/// [`Error::Kafka`] when librdkafka rejects the configuration.
pub(crate) fn create_consumer<C: ConsumerContext>(
    config: &Config,
    context: C,
) -> Result<BaseConsumer<C>> {
    let mut c = config.client_config(true);
    let user_set = |k: &str| config.kafka.contains_key(k) || config.kafka_consumer.contains_key(k);
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
        // librdkafka's 3 s default makes every cooperative rebalance (two rounds, noticed at
        // the next heartbeat) pause moved partitions for seconds.
        c.set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).min(500).to_string(),
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

/// Returns the partition count of `topic`; see [`topic_partitions`].
///
/// # Errors
/// [`Error::MissingTopic`] or [`Error::Unreachable`].
pub(crate) fn partition_count<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<usize> {
    topic_partitions(client, brokers, topic, timeout).map(|p| p.len())
}

/// Returns the partition ids of `topic`, or a clear error when the topic is missing or the
/// brokers (`brokers`, named in the error) do not answer within `timeout`.
///
/// Operators that open their own clients (a table reader, say) use it to fail with the
/// same errors as the worker's own start-up checks.
///
/// # Errors
/// [`Error::MissingTopic`] or [`Error::Unreachable`]; [`Error::Kafka`] for any other
/// metadata error.
pub fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| match e {
            KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut)
            | KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown)
            | KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure) => {
                Error::Unreachable {
                    brokers: brokers.to_string(),
                    message: format!("no broker answered within {timeout:?} ({e})"),
                }
            }
            other => Error::kafka(KafkaOp::Metadata, other),
        })?;
    let missing = || Error::MissingTopic {
        topic: topic.to_string(),
        brokers: brokers.to_string(),
    };
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(missing)?;
    match t.error() {
        None if !t.partitions().is_empty() => Ok(t.partitions().iter().map(|p| p.id()).collect()),
        None => Err(missing()),
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Err(missing())
        }
        Some(e) => Err(Error::kafka(
            KafkaOp::Metadata,
            KafkaError::MetadataFetch(RDKafkaErrorCode::from(e)),
        )),
    }
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
        if let Err(e) = create_consumer(&config, DefaultConsumerContext) {
            panic!("group.protocol=consumer was refused: {e}");
        }
        let classic = Config::new("classic", "127.0.0.1:1");
        assert!(create_consumer(&classic, DefaultConsumerContext).is_ok());
    }
}
