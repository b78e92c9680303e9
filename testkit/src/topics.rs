//! Topic names, creation, deletion, and preloading records.

use super::broker::client_config;
use super::{err, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A topic or group name unique to this process and call: `{prefix}-{pid}-{time}-{n}`.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{millis}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    client_config(brokers)?
        .create()
        .map_err(|e| err(format!("cannot create an admin client for {brokers}: {e}")))
}

fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    // The admin client's futures complete on librdkafka's own thread: a minimal
    // current-thread runtime is enough, and works inside or outside tokio tests.
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map(|rt| rt.block_on(f))
        })
        .join()
    })
    .expect("admin thread panicked")
    .expect("cannot build a tokio runtime")
}

/// Creates `topic` with `partitions` partitions (replication factor 1), and waits until
/// its metadata is visible.
///
/// # Errors
/// When the broker refuses (e.g. the topic exists).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    create_topic_with(brokers, topic, partitions, &[])
}

/// Like [`create_topic`] with topic configs (e.g. `("cleanup.policy", "compact")`).
///
/// # Errors
/// When the broker refuses.
pub fn create_topic_with(
    brokers: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    create(
        brokers,
        topic,
        partitions,
        TopicReplication::Fixed(1),
        configs,
    )
}

/// Creates `topic` with the replicas of partition `p` on the nodes `assignment[p]` (the
/// first one its preferred leader), and waits until every partition has a leader.
///
/// # Errors
/// When the broker refuses (e.g. a node that does not exist).
pub fn create_topic_assigned(brokers: &str, topic: &str, assignment: &[Vec<i32>]) -> Result<()> {
    let replicas: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
    create(
        brokers,
        topic,
        assignment.len() as i32,
        TopicReplication::Variable(&replicas),
        &[],
    )
}

fn create(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication: TopicReplication<'_>,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin = admin(brokers)?;
    let mut new = NewTopic::new(topic, partitions, replication);
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&new], &opts))
        .map_err(|e| err(format!("create topic {topic}: {e}")))?;
    for r in results {
        r.map_err(|(t, e)| err(format!("create topic {t}: {e}")))?;
    }
    // Wait until the metadata shows every partition with a leader.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| err(format!("metadata of {topic}: {e}")))?;
        let ready = md.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(err(format!("topic {topic} has no leaders after 30 s")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes topics; missing ones are ignored.
///
/// # Errors
/// When the admin client cannot be created or the request fails as a whole.
pub fn delete_topic(brokers: &str, topics: &[&str]) -> Result<()> {
    let admin = admin(brokers)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    block_on(admin.delete_topics(topics, &opts)).map_err(|e| err(format!("delete topics: {e}")))?;
    Ok(())
}

/// Replaces the configs of `topic` with `configs` (AlterConfigs: the ones not named go back
/// to the broker's defaults).
///
/// # Errors
/// When the broker refuses.
pub fn set_topic_config(brokers: &str, topic: &str, configs: &[(&str, &str)]) -> Result<()> {
    let admin = admin(brokers)?;
    let mut alter =
        rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.alter_configs([&alter], &opts))
        .map_err(|e| err(format!("alter the configs of {topic}: {e}")))?
    {
        r.map_err(|(_, e)| err(format!("alter the configs of {topic}: {e}")))?;
    }
    Ok(())
}

/// Deletes the records of `topic` before the given offsets, partition by partition
/// (`(partition, before)`): the partitions' log start moves to `before` (Kafka's
/// DeleteRecords, what retention and `kafka-delete-records.sh` do). Returns the new low
/// watermarks.
///
/// # Errors
/// When the request fails for the topic or one of the partitions.
pub fn delete_records(
    brokers: &str,
    topic: &str,
    before: &[(i32, i64)],
) -> Result<Vec<(i32, i64)>> {
    let admin = admin(brokers)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, o) in before {
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Offset(*o))
            .map_err(|e| err(format!("delete records of {topic}/{p}: {e}")))?;
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let result = block_on(admin.delete_records(&tpl, &opts))
        .map_err(|e| err(format!("delete records of {topic}: {e}")))?;
    result
        .elements()
        .iter()
        .map(|e| match (e.error(), e.offset()) {
            (Err(x), _) => Err(err(format!(
                "delete records of {topic}/{}: {x}",
                e.partition()
            ))),
            (Ok(()), rdkafka::Offset::Offset(o)) => Ok((e.partition(), o)),
            (Ok(()), other) => Err(err(format!(
                "delete records of {topic}/{}: unexpected result {other:?}",
                e.partition()
            ))),
        })
        .collect()
}

/// A plain (idempotent, non-transactional) producer for loading input data.
pub struct Loader {
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl Loader {
    /// Connects a loader to `brokers`.
    ///
    /// # Errors
    /// When the producer cannot be created.
    pub fn new(brokers: &str) -> Result<Loader> {
        let producer = client_config(brokers)?
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "500000")
            .create()
            .map_err(|e| err(format!("cannot create a producer: {e}")))?;
        Ok(Loader { producer })
    }

    /// Sends records `(partition, key, value)` and waits until all are acknowledged.
    /// Returns how many were written.
    ///
    /// # Errors
    /// When a record cannot be queued or the flush times out.
    pub fn send<I, K, V>(&self, topic: &str, records: I) -> Result<u64>
    where
        I: IntoIterator<Item = (Option<i32>, Option<K>, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.send_at(topic, records.into_iter().map(|(p, k, v)| (p, k, v, None)))
    }

    /// Sends records `(partition, key, value, timestamp)` (ms since the epoch; `None`: now)
    /// and waits until all are acknowledged. Returns how many were written.
    ///
    /// # Errors
    /// When a record cannot be queued or the flush times out.
    pub fn send_at<I, K, V>(&self, topic: &str, records: I) -> Result<u64>
    where
        I: IntoIterator<Item = (Option<i32>, Option<K>, V, Option<i64>)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.send_records(
            topic,
            records.into_iter().map(|(p, k, v, ts)| (p, k, Some(v), ts)),
        )
    }

    /// Sends records `(partition, key, value)` where a `None` value is a tombstone (a null
    /// value: a delete in a compacted topic), and waits until all are acknowledged.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_nullable<I, K, V>(&self, topic: &str, records: I) -> Result<u64>
    where
        I: IntoIterator<Item = (Option<i32>, Option<K>, Option<V>)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.send_records(topic, records.into_iter().map(|(p, k, v)| (p, k, v, None)))
    }

    fn send_records<I, K, V>(&self, topic: &str, records: I) -> Result<u64>
    where
        I: IntoIterator<Item = (Option<i32>, Option<K>, Option<V>, Option<i64>)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut n = 0u64;
        for (partition, key, value, timestamp) in records {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            rec.payload = value.as_ref().map(|v| v.as_ref());
            rec.key = key.as_ref().map(|k| k.as_ref());
            rec.partition = partition;
            rec.timestamp = timestamp;
            exactly_framework::producer::enqueue(&self.producer, rec)
                .map_err(|e| err(format!("produce to {topic}: {e}")))?;
            n += 1;
        }
        self.producer
            .flush(Duration::from_secs(120))
            .map_err(|e| err(format!("flush to {topic}: {e}")))?;
        Ok(n)
    }
}

/// Produces records `(partition, key, value)` with a new [`Loader`] and waits until all are
/// acknowledged. Returns how many were written.
///
/// # Errors
/// As [`Loader::send`].
pub fn produce<I, K, V>(brokers: &str, topic: &str, records: I) -> Result<u64>
where
    I: IntoIterator<Item = (Option<i32>, Option<K>, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    Loader::new(brokers)?.send(topic, records)
}
