//! Topics: names as a pipeline gives them, the metadata checks every client makes before
//! it uses a topic, and the internal topics the runtime creates (changelogs, repartition
//! hops), checks and purges.

use crate::config::Config;
use crate::error::{Error, KafkaOp, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// A topic as a pipeline names it: the user's, or an internal one the runtime names
/// `{application_id}-{name}` and creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicName {
    External(String),
    Internal(String),
}

impl TopicName {
    /// The topic's name for an application.
    pub(crate) fn resolve(&self, application_id: &str) -> String {
        match self {
            TopicName::External(t) => t.clone(),
            TopicName::Internal(n) => format!("{application_id}-{n}"),
        }
    }

    /// The name as given (internal topics without the application id prefix).
    pub(crate) fn as_given(&self) -> &str {
        match self {
            TopicName::External(t) | TopicName::Internal(t) => t,
        }
    }
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
            other => Error::kafka(KafkaOp::Metadata, other).naming("TOPIC", topic),
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
        )
        .naming("TOPIC", topic)),
    }
}

/// How an internal topic must be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicKind {
    /// A state changelog: `cleanup.policy=compact`, exactly (retention must never delete
    /// state).
    Changelog,
    /// A repartition hop: kept (`retention.ms=-1`) until the runtime purges what it has
    /// committed (DeleteRecords).
    Repartition,
}

impl TopicKind {
    fn name(self) -> &'static str {
        match self {
            TopicKind::Changelog => "changelog",
            TopicKind::Repartition => "repartition",
        }
    }
}

/// What the runtime learnt about an internal topic it ensured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    /// A changelog's `delete.retention.ms`: how long compaction keeps tombstones.
    pub(crate) delete_retention: Duration,
}

/// Kafka's default `delete.retention.ms` (a day).
const DEFAULT_DELETE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The worker's admin client.
pub(crate) fn client(config: &Config) -> Result<AdminClient<DefaultClientContext>> {
    config
        .client_config(false)?
        .create()
        .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::Worker(format!("cannot start an admin runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// The replication factor for new internal topics: the configured one, or min(3, brokers).
fn replication_factor(admin: &AdminClient<DefaultClientContext>, config: &Config) -> Result<i32> {
    if let Some(rf) = config.internal_replication_factor {
        return Ok(i32::from(rf));
    }
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| Error::kafka(KafkaOp::Metadata, e))?;
    Ok((md.brokers().len() as i32).clamp(1, 3))
}

/// Creates `topic` with `partitions` partitions, or checks that the existing one has that
/// many (and, for a changelog, is compacted and nothing else).
///
/// # Errors
/// [`Error::Config`] naming the topic and the fix when an existing topic does not fit, or
/// when the cluster cannot meet `internal_replication_factor`; [`Error::Kafka`] when the
/// admin calls fail.
pub(crate) fn ensure_topic(
    config: &Config,
    topic: &str,
    partitions: usize,
    kind: TopicKind,
) -> Result<TopicInfo> {
    let admin = client(config)?;
    let rf = replication_factor(&admin, config)?;
    let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(rf));
    new = match kind {
        TopicKind::Changelog => new.set("cleanup.policy", "compact"),
        TopicKind::Repartition => new.set("retention.ms", "-1"),
    };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&new], &opts))?
        .map_err(|e| Error::kafka(KafkaOp::Admin, e))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(
                topic,
                partitions,
                replication_factor = rf,
                ?kind,
                "internal topic created"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                return Err(Error::config(
                    "internal_replication_factor",
                    format!(
                    "the {} topic `{topic}` cannot be created with {rf} replicas on this cluster: \
                         set internal_replication_factor to at most the number of brokers",
                    kind.name()
                ),
                ))
            }
            Err((_, code)) => return Err(Error::kafka(KafkaOp::Admin, KafkaError::AdminOp(code))),
        }
    }
    // Also when another worker created it a moment ago.
    let found = wait_until_usable(&admin, config, topic)?;
    if found != partitions {
        return Err(Error::config(
            "internal topics",
            format!(
                "the {} topic `{topic}` has {found} partitions but the input has {partitions}; \
                 delete it or give it as many partitions",
                kind.name()
            ),
        ));
    }
    let mut info = TopicInfo {
        delete_retention: DEFAULT_DELETE_RETENTION,
    };
    if kind == TopicKind::Changelog {
        let refused = |e: KafkaError| {
            Error::kafka(KafkaOp::Admin, e)
                .needing("DESCRIBE_CONFIGS")
                .naming("TOPIC", topic)
        };
        let configs = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts))?
            .map_err(refused)?;
        // An answer without the topic's configuration (a node of the cluster down, say) is
        // an error to recover from, not a wrong configuration.
        let resource = match configs.first() {
            Some(Ok(r)) => r,
            Some(Err(code)) => return Err(refused(KafkaError::AdminOp(*code))),
            None => return Err(refused(KafkaError::AdminOp(RDKafkaErrorCode::Fail))),
        };
        let value = |name: &str| resource.get(name).and_then(|e| e.value.clone());
        let Some(policy) = value("cleanup.policy") else {
            return Err(refused(KafkaError::AdminOp(RDKafkaErrorCode::Fail)));
        };
        if policy != "compact" {
            return Err(Error::config(
                "internal topics",
                format!(
                    "the changelog topic `{topic}` has cleanup.policy={policy}; it must be compacted and \
                     nothing else, cleanup.policy must be exactly `compact` (retention would delete state): \
                     kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config \
                     cleanup.policy=compact"
                ),
            ));
        }
        if let Some(Ok(ms)) = value("delete.retention.ms").map(|v| v.parse::<u64>()) {
            info.delete_retention = Duration::from_millis(ms);
        }
    }
    Ok(info)
}

/// The `retention.ms` of `topic` when the broker deletes its records by time
/// (`cleanup.policy` includes `delete` and `retention.ms` is not -1); `None` otherwise.
///
/// # Errors
/// [`Error::Kafka`] when the configs cannot be described.
pub(crate) fn time_retention(config: &Config, topic: &str) -> Result<Option<i64>> {
    let admin = client(config)?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let configs = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts))?
        .map_err(|e| Error::kafka(KafkaOp::Admin, e))?;
    let Some(resource) = configs.first().and_then(|r| r.as_ref().ok()) else {
        return Ok(None);
    };
    let value = |name: &str| resource.get(name).and_then(|e| e.value.clone());
    let deletes = value("cleanup.policy").is_none_or(|p| p.contains("delete"));
    let ms = value("retention.ms").and_then(|v| v.parse::<i64>().ok());
    Ok(match ms {
        Some(ms) if deletes && ms > 0 => Some(ms),
        _ => None,
    })
}

/// After CreateTopics succeeded the topic can still be missing from metadata, or its
/// partitions leaderless, for a moment: using it then fails (a restore, a produce). Waits
/// until every partition has a leader, up to 30 s; returns the partition count.
fn wait_until_usable(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    topic: &str,
) -> Result<usize> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                let t = m.topics().iter().find(|t| t.name() == topic)?;
                let parts = t.partitions();
                (t.error().is_none() && !parts.is_empty() && parts.iter().all(|p| p.leader() >= 0))
                    .then_some(parts.len())
            });
        if let Some(found) = ready {
            return Ok(found);
        }
        if std::time::Instant::now() > deadline {
            return partition_count(
                admin.inner(),
                &config.brokers,
                topic,
                Duration::from_secs(5),
            );
        }
        // Metadata propagation has no event to wait on: poll it.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes the records of repartition partitions before their committed offsets (Kafka
/// Streams does the same): the hop keeps only what is not processed yet. Failures are
/// logged, not returned: a purge is housekeeping, retried at the next interval.
pub(crate) fn purge(admin: &AdminClient<DefaultClientContext>, committed: &[(String, i32, i64)]) {
    if committed.is_empty() {
        return;
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (topic, partition, offset) in committed {
        if tpl
            .add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset))
            .is_err()
        {
            return;
        }
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    match block_on(admin.delete_records(&tpl, &opts)) {
        Ok(Ok(result)) => {
            for e in result.elements() {
                if let Err(err) = e.error() {
                    tracing::warn!(topic = e.topic(), partition = e.partition(), %err, "purging committed repartition records failed");
                }
            }
        }
        Ok(Err(err)) => tracing::warn!(%err, "purging committed repartition records failed"),
        Err(err) => tracing::warn!(%err, "purging committed repartition records failed"),
    }
}
