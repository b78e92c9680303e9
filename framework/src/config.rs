//! Runtime configuration: one struct, defaults in one place, validated at startup.
//!
//! Build it in code ([`Config::new`] and the `with_*` setters), deserialize it (serde, unknown
//! fields rejected), or overlay environment variables with [`Config::with_env`]
//! (`EXACTLY_APPLICATION_ID`, `EXACTLY_BROKERS`, ... and `EXACTLY_LIBRDKAFKA_<PROPERTY>` for raw
//! librdkafka properties, `_` standing for `.`).

use crate::error::{Error, Result};
use crate::security::{Security, SECURITY_PROPERTIES};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The delivery guarantee of a pipeline. The same pipeline code runs under each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Output, state changes and consumed offsets commit together in one Kafka transaction.
    /// Nothing is lost or duplicated for `read_committed` readers, across crashes and
    /// rebalances.
    #[default]
    ExactlyOnce,
    /// Offsets are committed after the output of the records before them is acknowledged.
    /// Nothing is lost; after a crash or a failed commit the records since the last commit are
    /// processed (and written) again.
    AtLeastOnce,
    /// The Kafka client commits consumed offsets in the background every 5 s, whatever was
    /// written. A crash can lose records (offset committed, output not yet written) or
    /// duplicate them. Offered to show the difference, never as a default.
    AutoCommit,
}

/// What a worker does when user code (an operator, a codec, a hook) panics. Either way the
/// open transaction is aborted first and nothing of it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPanic {
    /// Stop with [`Error::Panicked`] (the default): a bug in user
    /// code usually hits again on the same record, and a person should look.
    #[default]
    Stop,
    /// Start the worker again in place after `backoff` (recovery, see
    /// `Config::max_recoveries`), at most `max` times in a row without a commit in between;
    /// then stop with the panic. For code that panics on transient conditions.
    Restart {
        /// Restarts in a row (without a commit in between) before the worker stops.
        max: u32,
        /// Wait before each restart.
        backoff: Duration,
    },
}

impl std::str::FromStr for Guarantee {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.replace('-', "_").to_ascii_lowercase().as_str() {
            "exactly_once" | "exactlyonce" | "eos" => Ok(Guarantee::ExactlyOnce),
            "at_least_once" | "atleastonce" | "alo" => Ok(Guarantee::AtLeastOnce),
            "auto_commit" | "autocommit" => Ok(Guarantee::AutoCommit),
            other => Err(Error::config(
                "guarantee",
                format!("`{other}` is not one of exactly_once, at_least_once, auto_commit"),
            )),
        }
    }
}

/// How input partitions are spread over the group's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Incremental (cooperative) rebalancing: only moved partitions stop.
    #[default]
    CooperativeSticky,
    /// Eager range assignment: every partition stops at each rebalance.
    Range,
    /// Eager round-robin assignment.
    RoundRobin,
}

impl Assignment {
    fn librdkafka_name(self) -> &'static str {
        match self {
            Assignment::CooperativeSticky => "cooperative-sticky",
            Assignment::Range => "range",
            Assignment::RoundRobin => "roundrobin",
        }
    }
}

/// Properties the runtime sets itself; a raw property may not override them.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("group.id", "application_id"),
    ("transactional.id", "application_id"),
    ("enable.auto.commit", "guarantee"),
    ("enable.auto.offset.store", "guarantee"),
    ("isolation.level", "guarantee"),
    ("partition.assignment.strategy", "assignment"),
    ("group.instance.id", "group_instance_id"),
    ("enable.idempotence", "guarantee"),
    ("transaction.timeout.ms", "transaction_timeout_ms"),
    ("session.timeout.ms", "session_timeout_ms"),
    ("max.poll.interval.ms", "max_poll_interval_ms"),
];

/// Creates (and drops) a client from `config`: librdkafka's own check of names and values.
fn probe<T: rdkafka::config::FromClientConfig>(config: rdkafka::ClientConfig) -> Result<()> {
    match config.create::<T>() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, msg, key, _)) => {
            Err(Error::config(key, msg))
        }
        Err(other) => Err(Error::config("kafka", other.to_string())),
    }
}

/// Configuration of a [`Runtime`](crate::runtime::Runtime).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Names the application: it is the consumer group id, the prefix of every worker's
    /// `transactional.id` and of internal topics. Required.
    pub application_id: String,
    /// Kafka bootstrap servers, `host:port[,host:port...]`. Required.
    pub brokers: String,
    /// The delivery guarantee (default `exactly_once`).
    pub guarantee: Guarantee,
    /// Longest time between two commits, in ms (default 100; 1..=3_600_000).
    pub commit_interval_ms: u64,
    /// Most input records in one transaction before a commit is cut (default 50_000).
    pub commit_max_records: u64,
    /// Directory of the local state stores (default `./exactly-state`); each worker uses
    /// `{state_dir}/{application_id}` and needs its own.
    pub state_dir: PathBuf,
    /// Write every state change to a compacted changelog topic (default true). Without it
    /// a partition that moves to another worker starts there with empty state: turn it off
    /// only when partitions are pinned to hosts.
    pub state_changelog: bool,
    /// Partition assignment strategy (default cooperative-sticky). Not sent under the
    /// KIP-848 protocol (consumer property `group.protocol=consumer`), where the broker
    /// assigns; `session_timeout_ms` and `heartbeat.interval.ms` are then broker settings too.
    pub assignment: Assignment,
    /// Static membership id (`group.instance.id`): a restart within the session timeout
    /// keeps the partitions without a rebalance. Must be unique per worker.
    pub group_instance_id: Option<String>,
    /// Consumer group session timeout in ms (default 45_000; 1000..=3_600_000).
    pub session_timeout_ms: u64,
    /// Longest time between two polls before the worker is removed from the group, in ms
    /// (default 300_000).
    pub max_poll_interval_ms: u64,
    /// Transaction timeout in ms: the broker aborts a transaction left open longer, e.g. by
    /// a crashed worker (default 10_000; 1000..=900_000).
    pub transaction_timeout_ms: u64,
    /// Deadline of one blocking Kafka call (commit, abort, send offsets), in ms
    /// (default 30_000).
    pub kafka_call_timeout_ms: u64,
    /// How long a worker waits at its first start for the brokers to answer before it stops
    /// with [`Error::Unreachable`], in ms (default 10_000;
    /// 100..=3_600_000). Later, a broker that goes away is waited for (recovery in place).
    pub startup_timeout_ms: u64,
    /// How many times a retriable error is retried before the cycle is aborted (default 5).
    pub max_retries: u32,
    /// How many times in a row (without a commit in between) a worker recovers in place
    /// from an error a restart fixes — fencing, a transaction the coordinator timed out, a
    /// commit of unknown outcome, a broker that stayed away — before it stops with that
    /// error (default 10; 0: never, stop at the first; 0..=1_000_000). See
    /// [`Error::recovery_cause`](crate::Error::recovery_cause).
    pub max_recoveries: u32,
    /// What a panic in user code does (default [`OnPanic::Stop`]; the environment takes
    /// `stop` or `restart`, which restarts at most 3 times, 1 s apart).
    pub on_panic: OnPanic,
    /// Replication factor of the internal topics (changelogs, repartition hops) the runtime
    /// creates (default: min(3, the cluster's broker count); 1..=32767).
    pub internal_replication_factor: Option<i16>,
    /// Estimated bytes each keyed aggregation (`count`, `reduce`, `aggregate`) and each
    /// pre-aggregation may cache per task before it flushes early (default 10 MiB, as Kafka
    /// Streams' `statestore.cache.max.bytes`; 0..=17_179_869_184). The cache folds a key's
    /// updates within a commit cycle into one output and one changelog record.
    pub cache_max_bytes: u64,
    /// Bytes of the local state store's block cache, per worker (fjall's `cache_size`;
    /// default 64 MiB; 1_048_576..=68_719_476_736).
    pub state_store_cache_bytes: u64,
    /// How often the records of a repartition hop that are committed get deleted from it
    /// (DeleteRecords), in ms (default 30_000, as Kafka Streams; 100..=86_400_000).
    pub repartition_purge_interval_ms: u64,
    /// Standby replicas of each changelog partition (default 0; 0..=16): each worker keeps
    /// warm local copies of the states of up to this many partitions' worth it does not
    /// own, tailing their changelogs, chosen by rendezvous hashing over the group's members,
    /// so that taking a partition over restores only the tail (docs/state.md). Needs
    /// `state_changelog`.
    pub standby_replicas: u32,
    /// Workers [`Runtime::run`](crate::Runtime::run) starts in this process (default 1;
    /// 1..=64): each a thread with its own consumer, transactional producer and state
    /// directory, all members of the same group. One worker per core is the usual choice;
    /// a worker per process is what the benchmarks compare (docs/operating.md).
    /// [`Runtime::spawn`](crate::Runtime::spawn) always starts one.
    pub workers: u32,
    /// Address the worker's interactive-query HTTP server listens on, `host:port`
    /// (default none: no server; port 0 picks one). Serves the committed values of its
    /// keyed states and redirects to the instance that owns a key; see docs/state.md.
    pub query_server: Option<String>,
    /// Address other instances and clients reach this worker's query server at,
    /// `host:port` (default: the bound address; required when it listens on 0.0.0.0).
    pub query_advertised_address: Option<String>,
    /// TLS and SASL for every client the runtime creates (default plaintext); see
    /// [`Security`].
    pub security: Security,
    /// Raw librdkafka properties passed to every client (consumer and producer). Values whose
    /// key mentions a password, secret, token or jaas config are hidden in `Debug`.
    pub kafka: BTreeMap<String, String>,
    /// Raw librdkafka properties for the consumer only (e.g. `heartbeat.interval.ms`).
    pub kafka_consumer: BTreeMap<String, String>,
    /// Raw librdkafka properties for the producer only (e.g. `linger.ms`).
    pub kafka_producer: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            application_id: String::new(),
            brokers: String::new(),
            guarantee: Guarantee::ExactlyOnce,
            commit_interval_ms: 100,
            commit_max_records: 50_000,
            state_dir: PathBuf::from("./exactly-state"),
            state_changelog: true,
            assignment: Assignment::CooperativeSticky,
            group_instance_id: None,
            session_timeout_ms: 45_000,
            max_poll_interval_ms: 300_000,
            transaction_timeout_ms: 10_000,
            kafka_call_timeout_ms: 30_000,
            startup_timeout_ms: 10_000,
            max_retries: 5,
            max_recoveries: 10,
            on_panic: OnPanic::Stop,
            internal_replication_factor: None,
            cache_max_bytes: 10 * 1024 * 1024,
            state_store_cache_bytes: 64 * 1024 * 1024,
            repartition_purge_interval_ms: 30_000,
            standby_replicas: 0,
            workers: 1,
            query_server: None,
            query_advertised_address: None,
            security: Security::default(),
            kafka: BTreeMap::new(),
            kafka_consumer: BTreeMap::new(),
            kafka_producer: BTreeMap::new(),
        }
    }
}

/// The `fetch.queue.backoff.ms` of the runtime's consumers, in ms: how long librdkafka waits
/// before it fetches again once its local queue holds `queued.min.messages` (its default,
/// 1000 ms, idles a fast worker most of the time).
pub(crate) const FETCH_QUEUE_BACKOFF_MS: &str = "10";

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("jaas") || k.contains("token")
}

fn hide(m: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    m.iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if is_secret(k) { "<hidden>" } else { v.as_str() },
            )
        })
        .collect()
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("application_id", &self.application_id)
            .field("brokers", &self.brokers)
            .field("guarantee", &self.guarantee)
            .field("commit_interval_ms", &self.commit_interval_ms)
            .field("commit_max_records", &self.commit_max_records)
            .field("state_dir", &self.state_dir)
            .field("state_changelog", &self.state_changelog)
            .field("assignment", &self.assignment)
            .field("group_instance_id", &self.group_instance_id)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("max_poll_interval_ms", &self.max_poll_interval_ms)
            .field("transaction_timeout_ms", &self.transaction_timeout_ms)
            .field("kafka_call_timeout_ms", &self.kafka_call_timeout_ms)
            .field("startup_timeout_ms", &self.startup_timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("max_recoveries", &self.max_recoveries)
            .field("on_panic", &self.on_panic)
            .field(
                "internal_replication_factor",
                &self.internal_replication_factor,
            )
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("state_store_cache_bytes", &self.state_store_cache_bytes)
            .field(
                "repartition_purge_interval_ms",
                &self.repartition_purge_interval_ms,
            )
            .field("standby_replicas", &self.standby_replicas)
            .field("workers", &self.workers)
            .field("query_server", &self.query_server)
            .field("query_advertised_address", &self.query_advertised_address)
            .field("security", &self.security)
            .field("kafka", &hide(&self.kafka))
            .field("kafka_consumer", &hide(&self.kafka_consumer))
            .field("kafka_producer", &hide(&self.kafka_producer))
            .finish()
    }
}

impl Config {
    /// A configuration with every default and the two required values.
    pub fn new(application_id: impl Into<String>, brokers: impl Into<String>) -> Self {
        Config {
            application_id: application_id.into(),
            brokers: brokers.into(),
            ..Config::default()
        }
    }

    /// Sets the delivery guarantee.
    pub fn with_guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// Sets the commit interval.
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval_ms = interval.as_millis() as u64;
        self
    }

    /// Sets the most input records per transaction.
    pub fn with_commit_max_records(mut self, records: u64) -> Self {
        self.commit_max_records = records;
        self
    }

    /// Sets the state directory.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// Sets the partition assignment strategy.
    pub fn with_assignment(mut self, assignment: Assignment) -> Self {
        self.assignment = assignment;
        self
    }

    /// Enables static membership with this `group.instance.id`.
    pub fn with_group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// Sets the session timeout.
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// Sets the max poll interval.
    pub fn with_max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval_ms = interval.as_millis() as u64;
        self
    }

    /// Sets how many times in a row a worker recovers in place before it stops (0: never).
    pub fn with_max_recoveries(mut self, recoveries: u32) -> Self {
        self.max_recoveries = recoveries;
        self
    }

    /// Sets what a panic in user code does.
    pub fn with_on_panic(mut self, on_panic: OnPanic) -> Self {
        self.on_panic = on_panic;
        self
    }

    /// Sets how long a worker waits for the brokers at its first start.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// Sets the transaction timeout.
    pub fn with_transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// Sets the replication factor of the internal topics the runtime creates.
    pub fn with_internal_replication_factor(mut self, replicas: i16) -> Self {
        self.internal_replication_factor = Some(replicas);
        self
    }

    /// Sets the estimated bytes of each keyed aggregation's cache per task (0: no cache, every
    /// record is flushed at once).
    pub fn with_cache_max_bytes(mut self, bytes: u64) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// Sets the bytes of the local state store's page cache (per worker).
    pub fn with_state_store_cache_bytes(mut self, bytes: u64) -> Self {
        self.state_store_cache_bytes = bytes;
        self
    }

    /// Sets how often committed repartition records are purged.
    pub fn with_repartition_purge_interval(mut self, interval: Duration) -> Self {
        self.repartition_purge_interval_ms = interval.as_millis() as u64;
        self
    }

    /// Keeps `replicas` warm standby copies of each changelog partition (see
    /// [`Config::standby_replicas`]).
    pub fn with_standby_replicas(mut self, replicas: u32) -> Self {
        self.standby_replicas = replicas;
        self
    }

    /// Runs `workers` workers per [`Runtime::run`](crate::Runtime::run) (see
    /// [`Config::workers`]).
    pub fn with_workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }

    /// Serves interactive queries on `addr` (see [`Config::query_server`]).
    pub fn with_query_server(mut self, addr: impl Into<String>) -> Self {
        self.query_server = Some(addr.into());
        self
    }

    /// Sets [`Config::query_advertised_address`].
    pub fn with_query_advertised_address(mut self, addr: impl Into<String>) -> Self {
        self.query_advertised_address = Some(addr.into());
        self
    }

    /// Sets TLS and SASL for every client (see [`Security`]).
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Adds a raw librdkafka property for every client.
    pub fn with_kafka_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.kafka.insert(key.into(), value.into());
        self
    }

    /// Adds a raw librdkafka property for the consumer only.
    pub fn with_consumer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.kafka_consumer.insert(key.into(), value.into());
        self
    }

    /// Adds a raw librdkafka property for the producer only.
    pub fn with_producer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.kafka_producer.insert(key.into(), value.into());
        self
    }

    /// Overlays `EXACTLY_*` environment variables: `EXACTLY_<FIELD>` for each field
    /// (`EXACTLY_COMMIT_INTERVAL_MS=50`), `EXACTLY_LIBRDKAFKA_<PROP>` for raw properties
    /// (`EXACTLY_LIBRDKAFKA_SECURITY_PROTOCOL=ssl`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when a value does not parse.
    pub fn with_env(self) -> Result<Self> {
        self.with_vars(std::env::vars())
    }

    fn with_vars(mut self, vars: impl Iterator<Item = (String, String)>) -> Result<Self> {
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
            v.parse()
                .map_err(|_| Error::config(key, format!("`{v}` is not a whole number")))
        }
        let mut security = BTreeMap::new();
        for (key, v) in vars {
            let Some(field) = key.strip_prefix("EXACTLY_") else {
                continue;
            };
            if crate::security::ENV_VARS.contains(&field) {
                security.insert(field.to_string(), v);
                continue;
            }
            match field {
                "APPLICATION_ID" => self.application_id = v,
                "BROKERS" => self.brokers = v,
                "GUARANTEE" => self.guarantee = v.parse()?,
                "COMMIT_INTERVAL_MS" => self.commit_interval_ms = num(&key, &v)?,
                "COMMIT_MAX_RECORDS" => self.commit_max_records = num(&key, &v)?,
                "STATE_DIR" => self.state_dir = v.into(),
                "STATE_CHANGELOG" => self.state_changelog = crate::security::flag(&key, &v)?,
                "ASSIGNMENT" => {
                    self.assignment = match v.as_str() {
                        "cooperative_sticky" | "cooperative-sticky" => {
                            Assignment::CooperativeSticky
                        }
                        "range" => Assignment::Range,
                        "round_robin" | "roundrobin" => Assignment::RoundRobin,
                        _ => {
                            return Err(Error::config(
                                key,
                                format!(
                                    "`{v}` is not one of cooperative_sticky, range, round_robin"
                                ),
                            ))
                        }
                    }
                }
                "GROUP_INSTANCE_ID" => self.group_instance_id = Some(v),
                "SESSION_TIMEOUT_MS" => self.session_timeout_ms = num(&key, &v)?,
                "MAX_POLL_INTERVAL_MS" => self.max_poll_interval_ms = num(&key, &v)?,
                "TRANSACTION_TIMEOUT_MS" => self.transaction_timeout_ms = num(&key, &v)?,
                "KAFKA_CALL_TIMEOUT_MS" => self.kafka_call_timeout_ms = num(&key, &v)?,
                "STARTUP_TIMEOUT_MS" => self.startup_timeout_ms = num(&key, &v)?,
                "MAX_RETRIES" => self.max_retries = num(&key, &v)?,
                "MAX_RECOVERIES" => self.max_recoveries = num(&key, &v)?,
                "ON_PANIC" => {
                    self.on_panic = match v.to_ascii_lowercase().as_str() {
                        "stop" => OnPanic::Stop,
                        "restart" => OnPanic::Restart {
                            max: 3,
                            backoff: Duration::from_secs(1),
                        },
                        _ => {
                            return Err(Error::config(
                                key,
                                format!("`{v}` is not one of stop, restart"),
                            ))
                        }
                    }
                }
                "INTERNAL_REPLICATION_FACTOR" => {
                    self.internal_replication_factor = Some(num(&key, &v)?)
                }
                "CACHE_MAX_BYTES" => self.cache_max_bytes = num(&key, &v)?,
                "STATE_STORE_CACHE_BYTES" => self.state_store_cache_bytes = num(&key, &v)?,
                "REPARTITION_PURGE_INTERVAL_MS" => {
                    self.repartition_purge_interval_ms = num(&key, &v)?
                }
                "STANDBY_REPLICAS" => self.standby_replicas = num(&key, &v)?,
                "WORKERS" => self.workers = num(&key, &v)?,
                "QUERY_SERVER" => self.query_server = Some(v),
                "QUERY_ADVERTISED_ADDRESS" => self.query_advertised_address = Some(v),
                f if f.starts_with("LIBRDKAFKA_") => {
                    let prop = f["LIBRDKAFKA_".len()..]
                        .to_ascii_lowercase()
                        .replace('_', ".");
                    self.kafka.insert(prop, v);
                }
                // Other EXACTLY_ variables belong to tools (EXACTLY_KAFKA_HOME, ...).
                _ => {}
            }
        }
        self.security = std::mem::take(&mut self.security).overlay(&security)?;
        Ok(self)
    }

    /// The query server's listen address and the address it advertises, when a query
    /// server is configured (the advertised one is `None` when it is the bound address).
    ///
    /// # Errors
    /// [`Error::Config`] when `query_server` is not a `host:port`, or
    /// `query_advertised_address` has no port.
    pub(crate) fn query_addresses(&self) -> Result<Option<(std::net::SocketAddr, Option<String>)>> {
        use std::net::ToSocketAddrs;
        let Some(listen) = &self.query_server else {
            if self.query_advertised_address.is_some() {
                return Err(Error::config(
                    "query_advertised_address",
                    "is set but query_server is not: set query_server to the address to listen on",
                ));
            }
            return Ok(None);
        };
        let bind = listen
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Error::config(
                    "query_server",
                    format!("`{listen}` is not a host:port to listen on (e.g. 127.0.0.1:8080 or 0.0.0.0:8080)"),
                )
            })?;
        let advertised = match &self.query_advertised_address {
            Some(a)
                if a.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
            {
                Some(a.clone())
            }
            Some(a) => {
                return Err(Error::config(
                    "query_advertised_address",
                    format!("`{a}` is not a host:port that other instances can reach"),
                ))
            }
            None => None,
        };
        Ok(Some((bind, advertised)))
    }

    /// The commit interval as a duration.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    /// The deadline of one blocking Kafka call.
    pub fn kafka_call_timeout(&self) -> Duration {
        Duration::from_millis(self.kafka_call_timeout_ms)
    }

    /// Checks every value; the message names the key and the allowed range.
    ///
    /// # Errors
    /// [`Error::Config`] for the first invalid value, including unknown librdkafka
    /// properties and properties the runtime owns.
    pub fn validate(&self) -> Result<()> {
        fn range(key: &str, v: u64, lo: u64, hi: u64) -> Result<()> {
            if v < lo || v > hi {
                return Err(Error::config(
                    key,
                    format!("{v} is outside the allowed range {lo}..={hi}"),
                ));
            }
            Ok(())
        }
        if self.application_id.is_empty() {
            return Err(Error::config(
                "application_id",
                "is required (it names the consumer group)",
            ));
        }
        if !self
            .application_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Error::config(
                "application_id",
                format!("`{}` may only contain ASCII letters, digits, '.', '_' and '-' (it prefixes topic names)", self.application_id),
            ));
        }
        if self.brokers.trim().is_empty() {
            return Err(Error::config(
                "brokers",
                "is required (host:port[,host:port...])",
            ));
        }
        range("commit_interval_ms", self.commit_interval_ms, 1, 3_600_000)?;
        range(
            "commit_max_records",
            self.commit_max_records,
            1,
            100_000_000,
        )?;
        range(
            "session_timeout_ms",
            self.session_timeout_ms,
            1_000,
            3_600_000,
        )?;
        range(
            "max_poll_interval_ms",
            self.max_poll_interval_ms,
            1_000,
            86_400_000,
        )?;
        range(
            "transaction_timeout_ms",
            self.transaction_timeout_ms,
            1_000,
            900_000,
        )?;
        range(
            "kafka_call_timeout_ms",
            self.kafka_call_timeout_ms,
            100,
            600_000,
        )?;
        range("max_retries", u64::from(self.max_retries), 0, 1_000)?;
        range(
            "startup_timeout_ms",
            self.startup_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "max_recoveries",
            u64::from(self.max_recoveries),
            0,
            1_000_000,
        )?;
        if self.max_poll_interval_ms < self.session_timeout_ms {
            return Err(Error::config(
                "max_poll_interval_ms",
                format!(
                    "{} must be at least session_timeout_ms ({})",
                    self.max_poll_interval_ms, self.session_timeout_ms
                ),
            ));
        }
        if let Some(rf) = self.internal_replication_factor {
            range("internal_replication_factor", rf.max(0) as u64, 1, 32_767)?;
        }
        range(
            "cache_max_bytes",
            self.cache_max_bytes,
            0,
            16 * 1024 * 1024 * 1024,
        )?;
        range(
            "state_store_cache_bytes",
            self.state_store_cache_bytes,
            1024 * 1024,
            64 * 1024 * 1024 * 1024,
        )?;
        range(
            "repartition_purge_interval_ms",
            self.repartition_purge_interval_ms,
            100,
            86_400_000,
        )?;
        range("standby_replicas", u64::from(self.standby_replicas), 0, 16)?;
        range("workers", u64::from(self.workers), 1, 64)?;
        if self.workers > 1 && self.query_server.is_some() {
            return Err(Error::config(
                "workers",
                "a query server serves one worker: run one worker per process when query_server is set",
            ));
        }
        if self.standby_replicas > 0 && !self.state_changelog {
            return Err(Error::config(
                "standby_replicas",
                "needs state_changelog: a standby tails the changelog",
            ));
        }
        self.query_addresses()?;
        for key in self
            .kafka
            .keys()
            .chain(self.kafka_consumer.keys())
            .chain(self.kafka_producer.keys())
        {
            if let Some((_, field)) = OWNED_PROPERTIES.iter().find(|(p, _)| p == key) {
                return Err(Error::config(
                    key.clone(),
                    format!("is set by exactly; use the `{field}` setting instead"),
                ));
            }
        }
        if self.security.is_set() {
            for key in self
                .kafka
                .keys()
                .chain(self.kafka_consumer.keys())
                .chain(self.kafka_producer.keys())
            {
                if SECURITY_PROPERTIES.contains(&key.as_str()) {
                    return Err(Error::config(
                        key.clone(),
                        "is set by the `security` setting too: set TLS and SASL in one place",
                    ));
                }
            }
        }
        if self.guarantee == Guarantee::ExactlyOnce {
            let set = self
                .kafka_producer
                .get("message.timeout.ms")
                .or_else(|| self.kafka.get("message.timeout.ms"));
            if let Some(v) = set {
                match v.parse::<u64>() {
                    Ok(ms) if ms <= self.transaction_timeout_ms => {}
                    _ => {
                        return Err(Error::config(
                            "message.timeout.ms",
                            format!(
                                "{v} exceeds transaction_timeout_ms ({}): under exactly_once a record must \
                                 be delivered within its transaction",
                                self.transaction_timeout_ms
                            ),
                        ))
                    }
                }
            }
        }
        // librdkafka knows its properties: let it reject unknown names and bad values, for
        // each client as the runtime configures it.
        probe::<rdkafka::producer::BaseProducer>(self.client_config(false)?)?;
        let mut consumer = self.client_config(true)?;
        consumer.set("group.id", &self.application_id);
        probe::<rdkafka::consumer::BaseConsumer>(consumer)?;
        Ok(())
    }

    /// The librdkafka properties of a consumer (`consumer == true`) or a producer (and of
    /// the admin clients) of this configuration: the brokers, [`Security`] with its secrets
    /// read now, and the raw properties. Clients the runtime does not create (a reader of the
    /// output, a tool) reach the cluster the same way with these.
    ///
    /// # Errors
    /// [`Error::Config`] when a secret cannot be read.
    pub fn client_config(&self, consumer: bool) -> Result<rdkafka::ClientConfig> {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in self.security.properties()? {
            c.set(k, v);
        }
        let own = if consumer {
            &self.kafka_consumer
        } else {
            &self.kafka_producer
        };
        for (k, v) in self.kafka.iter().chain(own) {
            c.set(k, v);
        }
        Ok(c)
    }

    /// librdkafka's name of the assignment strategy.
    pub(crate) fn assignment_strategy(&self) -> &'static str {
        self.assignment.librdkafka_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config::new("app", "127.0.0.1:9092")
    }

    #[test]
    fn defaults_are_valid() {
        valid().validate().unwrap();
        assert_eq!(valid().commit_interval(), Duration::from_millis(100));
        assert_eq!(valid().guarantee, Guarantee::ExactlyOnce);
    }

    #[test]
    fn out_of_range_names_key_and_range() {
        let e = valid()
            .with_commit_interval(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration `commit_interval_ms`: 0 is outside the allowed range 1..=3600000"
        );
    }

    #[test]
    fn workers_are_one_to_sixty_four_and_one_with_a_query_server() {
        assert!(valid().with_workers(0).validate().is_err());
        assert!(valid().with_workers(65).validate().is_err());
        valid().with_workers(4).validate().unwrap();
        let e = valid()
            .with_workers(2)
            .with_query_server("127.0.0.1:0")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("`workers`"), "{e}");
        let env = valid()
            .with_vars([("EXACTLY_WORKERS".to_string(), "3".to_string())].into_iter())
            .unwrap();
        assert_eq!(env.workers, 3);
    }

    #[test]
    fn unknown_librdkafka_property_is_rejected() {
        let e = valid()
            .with_kafka_property("no.such.property", "1")
            .validate()
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("no.such.property"), "{msg}");
    }

    #[test]
    fn owned_property_is_rejected() {
        let e = valid()
            .with_kafka_property("enable.auto.commit", "true")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("use the `guarantee` setting"), "{e}");
    }

    #[test]
    fn secrets_hidden_in_debug() {
        let c = valid().with_kafka_property("sasl.password", "hunter2");
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && s.contains("<hidden>"), "{s}");
    }

    #[test]
    fn env_overlay() {
        let vars = [
            ("EXACTLY_COMMIT_INTERVAL_MS", "50"),
            ("EXACTLY_GUARANTEE", "at_least_once"),
            ("EXACTLY_LIBRDKAFKA_SECURITY_PROTOCOL", "plaintext"),
            ("EXACTLY_KAFKA_HOME", "/tmp/not-a-property"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = valid().with_vars(vars.into_iter()).unwrap();
        assert_eq!(c.commit_interval_ms, 50);
        assert_eq!(c.guarantee, Guarantee::AtLeastOnce);
        assert_eq!(
            c.kafka.get("security.protocol").map(String::as_str),
            Some("plaintext")
        );
        let bad = valid()
            .with_vars([("EXACTLY_MAX_RETRIES".to_string(), "many".to_string())].into_iter());
        assert_eq!(
            bad.unwrap_err().to_string(),
            "invalid configuration `EXACTLY_MAX_RETRIES`: `many` is not a whole number"
        );
    }

    #[test]
    fn unknown_fields_rejected_by_serde() {
        let e = serde_json::from_str::<Config>(
            r#"{"application_id":"a","brokers":"b","comit_interval_ms":5}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("unknown field `comit_interval_ms`"),
            "{e}"
        );
    }
}
