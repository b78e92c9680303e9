//! Internal topics: the runtime creates changelog and repartition topics, and checks
//! existing ones.

use crate::config::Config;
use crate::error::{Error, KafkaOp, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::time::Duration;

/// How an internal topic must be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicKind {
    /// A state changelog: compacted.
    Changelog,
    /// A repartition hop: kept (`retention.ms=-1`) until compaction of the pipeline's
    /// progress can purge it.
    Repartition,
}

/// Creates `topic` with `partitions` partitions, or checks that the existing one has that
/// many (and, for a changelog, is compacted).
///
/// # Errors
/// [`Error::Config`] naming the topic and the fix when an existing topic does not fit;
/// [`Error::Kafka`] when the admin calls fail.
pub(crate) fn ensure_topic(
    config: &Config,
    topic: &str,
    partitions: usize,
    kind: TopicKind,
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config(false)
        .create()
        .map_err(|e| Error::kafka(KafkaOp::CreateClient, e))?;
    let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
    new = match kind {
        TopicKind::Changelog => new.set("cleanup.policy", "compact"),
        TopicKind::Repartition => new.set("retention.ms", "-1"),
    };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::Worker(format!("cannot start an admin runtime: {e}")))?;
    let results = rt
        .block_on(admin.create_topics([&new], &opts))
        .map_err(|e| Error::kafka(KafkaOp::Admin, e))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, ?kind, "internal topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::kafka(
                    KafkaOp::Admin,
                    rdkafka::error::KafkaError::AdminOp(code),
                ))
            }
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
                match kind {
                    TopicKind::Changelog => "changelog",
                    TopicKind::Repartition => "repartition",
                }
            ),
        ));
    }
    if kind == TopicKind::Changelog {
        let configs = rt
            .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts))
            .map_err(|e| Error::kafka(KafkaOp::Admin, e))?;
        let policy = configs
            .first()
            .and_then(|r| r.as_ref().ok())
            .and_then(|r| r.get("cleanup.policy"))
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        if !policy.contains("compact") {
            return Err(Error::config(
                "internal topics",
                format!(
                    "the changelog topic `{topic}` has cleanup.policy={policy}; it must be compacted \
                     (kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact)"
                ),
            ));
        }
    }
    Ok(())
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
            return crate::source::partition_count(
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
