//! Errors of the framework, classified by what the caller must do about them.
//!
//! Every fallible operation has its own variant (or its own [`KafkaOp`] for Kafka calls), and
//! [`Error::action`] mirrors librdkafka's classification (`is_retriable`,
//! `txn_requires_abort`, `is_fatal`) into [`Action::Retry`], [`Action::Abort`] or
//! [`Action::Fatal`]. The commit cycle decides from that alone.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::fmt;

/// The framework's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the caller must do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Call the same operation again with the same arguments (bounded).
    Retry,
    /// Abort the open transaction, drop uncommitted state, rewind the input, go on.
    Abort,
    /// Stop the worker cleanly: nothing more can be committed by this instance.
    Fatal,
}

/// The Kafka operation that failed (one per call the runtime makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KafkaOp {
    /// Creating a consumer, producer or admin client.
    CreateClient,
    /// Subscribing to the input topics.
    Subscribe,
    /// Fetching cluster or topic metadata.
    Metadata,
    /// Polling the consumer for records.
    Poll,
    /// Seeking a partition back to its committed offset.
    Seek,
    /// `init_transactions`.
    InitTransactions,
    /// `begin_transaction`.
    BeginTransaction,
    /// Producing an output record.
    Produce,
    /// Flushing the producer.
    Flush,
    /// `send_offsets_to_transaction`.
    SendOffsets,
    /// `commit_transaction`.
    CommitTransaction,
    /// `abort_transaction`.
    AbortTransaction,
    /// Committing consumer offsets (at-least-once).
    CommitOffsets,
    /// Fetching committed offsets of the group.
    FetchCommitted,
    /// Creating or deleting topics.
    Admin,
}

impl fmt::Display for KafkaOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            KafkaOp::CreateClient => "creating a Kafka client",
            KafkaOp::Subscribe => "subscribing to the input topics",
            KafkaOp::Metadata => "fetching metadata",
            KafkaOp::Poll => "polling the consumer",
            KafkaOp::Seek => "seeking to the committed offset",
            KafkaOp::InitTransactions => "init_transactions",
            KafkaOp::BeginTransaction => "begin_transaction",
            KafkaOp::Produce => "producing an output record",
            KafkaOp::Flush => "flushing the producer",
            KafkaOp::SendOffsets => "send_offsets_to_transaction",
            KafkaOp::CommitTransaction => "commit_transaction",
            KafkaOp::AbortTransaction => "abort_transaction",
            KafkaOp::CommitOffsets => "committing consumer offsets",
            KafkaOp::FetchCommitted => "fetching committed offsets",
            KafkaOp::Admin => "an admin operation",
        };
        f.write_str(name)
    }
}

/// An error of the exactly framework.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or out of range.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The configuration key (as written in `Config` or the librdkafka property name).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An input or output topic does not exist.
    #[error("topic `{topic}` does not exist on {brokers}: create it first (for example `kafka-topics.sh --create --topic {topic} --partitions N`)")]
    MissingTopic {
        /// The missing topic.
        topic: String,
        /// The bootstrap servers asked.
        brokers: String,
    },
    /// The brokers did not answer.
    #[error("cannot reach Kafka at {brokers}: {message}")]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// What the client reported.
        message: String,
    },
    /// A record's key or value could not be decoded by the pipeline's serde.
    #[error("cannot decode the {part} of record {topic}/{partition}@{offset}: {message}")]
    Decode {
        /// `key` or `value`.
        part: &'static str,
        /// Input topic.
        topic: String,
        /// Input partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// What the serde reported.
        message: String,
    },
    /// An output key or value could not be encoded.
    #[error("cannot encode an output {part} for topic `{topic}`: {message}")]
    Encode {
        /// `key` or `value`.
        part: &'static str,
        /// Output topic.
        topic: String,
        /// What the serde reported.
        message: String,
    },
    /// A Kafka client call failed.
    #[error("{op} failed: {source}")]
    Kafka {
        /// The operation.
        op: KafkaOp,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The cluster's authorizer refused a request: the principal lacks an ACL. Nothing of
    /// the open transaction is committed; a restart would be refused the same way, so the
    /// worker stops at once (no retry, no recovery in place) and says what to grant.
    #[error("not authorized: {op} needs {operation} on {resource_type} {} ({reason}); grant it: kafka-acls.sh --add --allow-principal User:<principal> --operation {} {} (docs/security.md lists every ACL an application needs)", resource.as_deref().map_or("(the resource this call names)".to_string(), |r| format!("`{r}`")), acl_operation(operation), acl_resource(resource_type, resource.as_deref()))]
    NotAuthorized {
        /// The operation refused.
        op: KafkaOp,
        /// `TOPIC`, `GROUP`, `TRANSACTIONAL_ID` or `CLUSTER`.
        resource_type: &'static str,
        /// The resource's name, when the refused call is known to name one.
        resource: Option<String>,
        /// The ACL operation it needs: `READ`, `WRITE`, `CREATE`, `DESCRIBE`, ...
        operation: &'static str,
        /// The broker's error.
        reason: String,
    },
    /// Another instance took over this worker's partitions or transactional id: this
    /// instance can no longer commit and stops (a "zombie").
    #[error("this worker was fenced during {op}: {reason}; nothing of its open transaction is committed. Another worker may own its partitions now: the worker starts again with a new producer and rejoins the group (exactly_recoveries_total), unless max_recoveries is spent")]
    Fenced {
        /// The operation that discovered it.
        op: KafkaOp,
        /// Why (the broker's error).
        reason: String,
    },
    /// The commit gate refused to send offsets: this worker is no longer a member that owns
    /// its partitions. The cycle is aborted and replayed once the group has reassigned.
    #[error("not committing: {reason}; the cycle is aborted and its input rewound")]
    MembershipLost {
        /// What the gate saw.
        reason: String,
    },
    /// Another member joined the group with this worker's `group_instance_id` (and so its
    /// transactional id) and took its place.
    #[error("another worker joined the group with this worker's group_instance_id `{instance}` and took its place ({reason}, found during {op}): each worker needs its own group_instance_id. This one stops; if the other is this worker restarted elsewhere nothing is lost, otherwise give one of them another id")]
    DuplicateInstance {
        /// The `group_instance_id`.
        instance: String,
        /// The operation that found out.
        op: KafkaOp,
        /// The broker's error.
        reason: String,
    },
    /// A user operator returned an error.
    #[error("operator `{operator}` failed: {message}")]
    Operator {
        /// The operator's name.
        operator: String,
        /// The operator's message.
        message: String,
    },
    /// The local state store failed.
    #[error("state store {op} failed: {message}")]
    State {
        /// The store operation.
        op: &'static str,
        /// What failed.
        message: String,
    },
    /// User code (an operator, a codec) panicked. The open transaction was aborted before
    /// anything else ran: nothing of the cycle is visible, and a restart resumes from the
    /// last commit.
    #[error("operator `{operator}` panicked {at}: {message}; the open transaction was aborted and nothing of it was committed. Fix the operator and restart: the worker resumes from the last commit")]
    Panicked {
        /// The operator (or `source {topic}` / `sink {topic}` for a codec).
        operator: String,
        /// Where: `on record {topic}/{partition}@{offset}`, or the hook and task.
        at: String,
        /// The panic's message.
        message: String,
    },
    /// `commit_transaction` neither succeeded nor failed within its retries: the
    /// transaction may or may not be committed. The worker stops without another
    /// transactional call (an abort now could conflict with the commit still in flight);
    /// on restart the group's committed offsets and the state restore decide.
    #[error("commit_transaction did not complete after {attempts} attempts ({last}); its outcome is unknown, so this producer is not used again (no abort either): the worker starts again with a new one, which fences what is left of the old transaction, and resumes from the group's committed offsets")]
    CommitOutcomeUnknown {
        /// Calls made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The transaction coordinator aborted this worker's transaction because it stayed open
    /// longer than `transaction_timeout_ms`, and bumped the producer's epoch.
    #[error("the transaction was open for {open_ms} ms, longer than transaction_timeout_ms ({timeout_ms} ms): the coordinator aborted it, which {op} found out ({reason}). Nothing of it is visible. Make cycles shorter (commit_interval_ms, commit_max_records) or raise transaction_timeout_ms")]
    TransactionTimedOut {
        /// The operation that found out.
        op: KafkaOp,
        /// How long the transaction had been open.
        open_ms: u64,
        /// `transaction_timeout_ms`.
        timeout_ms: u64,
        /// The broker's error.
        reason: String,
    },
    /// Input records were deleted (retention, DeleteRecords) before this application
    /// processed them: the partition's log now starts after its committed offset.
    #[error("{topic}/{partition}: the committed offset {committed} is below the log start {log_start}, so records {committed}..{log_start} were deleted before this application processed them. Nothing was processed past the committed offset. To accept the loss, move the group on: kafka-consumer-groups.sh --bootstrap-server B --group G --topic {topic}:{partition} --reset-offsets --to-earliest --execute")]
    RecordsDeleted {
        /// Input topic.
        topic: String,
        /// Input partition.
        partition: i32,
        /// The group's committed offset.
        committed: i64,
        /// The partition's low watermark.
        log_start: i64,
    },
    /// A partition's log ends below the offset this application committed: it was truncated
    /// (an unclean leader election) or deleted and created again. What is at those offsets
    /// now may be new records, so they are not skipped silently.
    #[error("{topic}/{partition}: the log ends at {end}, below the committed offset {committed}: it was truncated (an unclean leader election) or deleted and created again. Records written there since may be new, so the worker stops instead of skipping them. Decide where to resume: kafka-consumer-groups.sh --bootstrap-server B --group G --topic {topic}:{partition} --reset-offsets --to-offset N --execute")]
    LogTruncated {
        /// Input topic.
        topic: String,
        /// Input partition.
        partition: i32,
        /// The offset the task had committed.
        committed: i64,
        /// The partition's high watermark now.
        end: i64,
    },
    /// Every cycle of a row of `max_retries + 1` was aborted: the worker does not go on
    /// replaying the same input. Whether it recovers in place is the last error's call
    /// (see [`Error::recovery_cause`]).
    #[error("{aborts} cycles in a row were aborted; last error: {last}")]
    AbortedInARow {
        /// Cycles aborted in a row.
        aborts: u32,
        /// The last abort's error.
        last: Box<Error>,
    },
    /// The worker thread stopped unexpectedly.
    #[error("worker stopped unexpectedly: {0}")]
    Worker(String),
}

impl Error {
    /// Builds a [`Error::Kafka`], turning fencing codes into [`Error::Fenced`] and
    /// authorization codes into [`Error::NotAuthorized`] (name the resource with
    /// [`naming`](Self::naming)).
    pub fn kafka(op: KafkaOp, source: KafkaError) -> Self {
        if let Some(code) = source.rdkafka_error_code() {
            if is_fencing_code(code) {
                return Error::Fenced {
                    op,
                    reason: source.to_string(),
                };
            }
            if let Some((resource_type, operation)) = needed_acl(op, code) {
                return Error::NotAuthorized {
                    op,
                    resource_type,
                    resource: None,
                    operation,
                    reason: source.to_string(),
                };
            }
        }
        Error::Kafka { op, source }
    }

    /// Sets the ACL operation an [`Error::NotAuthorized`] needs, when the caller knows
    /// better than the call (a metadata lookup of an output topic needs `WRITE`, of an input
    /// `READ`); other errors are returned as they are.
    pub fn needing(mut self, operation: &'static str) -> Self {
        if let Error::NotAuthorized { operation: o, .. } = &mut self {
            *o = operation;
        }
        self
    }

    /// Names the resource of an [`Error::NotAuthorized`] of `resource_type` that names none
    /// yet (the caller knows which topic, group or transactional id it asked for); other
    /// errors are returned as they are.
    pub fn naming(mut self, resource_type: &str, name: impl Into<String>) -> Self {
        if let Error::NotAuthorized {
            resource_type: t,
            resource: r @ None,
            ..
        } = &mut self
        {
            if *t == resource_type {
                *r = Some(name.into());
            }
        }
        self
    }

    /// Builds an [`Error::Config`].
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Whether a worker that stopped on this error gets past it by starting again in place
    /// — its open cycle dropped, a new transactional producer (`init_transactions` fences
    /// what the old one left), a new consumer that rejoins the group, state restored from
    /// the committed offsets — as Kafka Streams does with a "task migrated". `Some(cause)`:
    /// yes, `cause` labels `exactly_recoveries_total`. `None`: a restart cannot fix it (bad
    /// configuration or input, a missing or truncated topic, authorization, a panic, a
    /// duplicate static id, a broken state store): the worker stops and says what to do.
    pub fn recovery_cause(&self) -> Option<&'static str> {
        match self {
            Error::Fenced { .. } => Some("fenced"),
            Error::TransactionTimedOut { .. } => Some("transaction_timed_out"),
            Error::CommitOutcomeUnknown { .. } => Some("commit_outcome_unknown"),
            Error::MembershipLost { .. } => Some("membership_lost"),
            // A new producer and consumer fix what broke the cycles only if they would fix
            // the last error (not, say, a local store that cannot be caught up).
            Error::AbortedInARow { last, .. } => last.recovery_cause(),
            Error::Kafka { source, .. } if !is_permanent(source) => Some("kafka"),
            _ => None,
        }
    }

    /// Whether the error is about one record rather than the worker: it does not decode, an
    /// operator refused it, its output does not encode, or the producer refused it (too
    /// large). The pipeline's [`BadRecords`](crate::BadRecords) policy decides what then.
    pub fn is_bad_record(&self) -> bool {
        match self {
            Error::Decode { .. } | Error::Encode { .. } | Error::Operator { .. } => true,
            Error::Kafka {
                op: KafkaOp::Produce,
                source: KafkaError::MessageProduction(code),
            } => matches!(
                code,
                RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord
            ),
            _ => false,
        }
    }

    /// What the caller must do: retry, abort the transaction, or stop.
    pub fn action(&self) -> Action {
        match self {
            Error::Kafka { op, source } => kafka_action(*op, source),
            Error::Fenced { .. }
            | Error::DuplicateInstance { .. }
            | Error::Panicked { .. }
            | Error::CommitOutcomeUnknown { .. }
            | Error::TransactionTimedOut { .. }
            | Error::RecordsDeleted { .. }
            | Error::LogTruncated { .. }
            | Error::Config { .. }
            | Error::MissingTopic { .. }
            | Error::Unreachable { .. }
            | Error::AbortedInARow { .. }
            | Error::NotAuthorized { .. }
            | Error::Worker(_) => Action::Fatal,
            // A record that cannot be processed is not made processable by an abort; the
            // runtime stops so that nothing after it is committed (nothing is lost).
            Error::Decode { .. } | Error::Encode { .. } | Error::Operator { .. } => Action::Fatal,
            Error::State { .. } | Error::MembershipLost { .. } => Action::Abort,
        }
    }
}

/// Error codes that mean this instance lost the right to commit: its producer epoch was
/// bumped by another instance, its static id was taken, or the group removed it (it stalled
/// past `max.poll.interval.ms` or the session timed out) and gave its partitions to others.
///
/// `ILLEGAL_GENERATION` is not among them: during a cooperative rebalance a member that
/// keeps its partitions may commit with the previous generation; that cycle is aborted and
/// replayed, and the worker goes on with the new generation.
fn is_fencing_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::FencedInstanceId
            | RDKafkaErrorCode::UnknownMemberId
    )
}

/// The ACL (resource type, operation) an authorization error code says `op` lacks.
fn needed_acl(op: KafkaOp, code: RDKafkaErrorCode) -> Option<(&'static str, &'static str)> {
    use RDKafkaErrorCode as C;
    Some(match code {
        C::TopicAuthorizationFailed => match op {
            KafkaOp::Metadata => ("TOPIC", "DESCRIBE"),
            KafkaOp::Subscribe | KafkaOp::Poll | KafkaOp::Seek | KafkaOp::FetchCommitted => {
                ("TOPIC", "READ")
            }
            KafkaOp::Admin => ("TOPIC", "CREATE"),
            _ => ("TOPIC", "WRITE"),
        },
        C::GroupAuthorizationFailed => ("GROUP", "READ"),
        C::TransactionalIdAuthorizationFailed => ("TRANSACTIONAL_ID", "WRITE"),
        C::ClusterAuthorizationFailed => match op {
            KafkaOp::InitTransactions | KafkaOp::Produce | KafkaOp::Flush => {
                ("CLUSTER", "IDEMPOTENT_WRITE")
            }
            _ => ("CLUSTER", "DESCRIBE_CONFIGS"),
        },
        _ => return None,
    })
}

/// `kafka-acls.sh`'s spelling of an operation: `DESCRIBE_CONFIGS` → `DescribeConfigs`.
fn acl_operation(operation: &str) -> String {
    operation
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_string() + &c.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

/// `kafka-acls.sh`'s resource option: `--topic NAME`, `--group NAME`, ...
fn acl_resource(resource_type: &str, name: Option<&str>) -> String {
    let name = name.unwrap_or("NAME");
    match resource_type {
        "TOPIC" => format!("--topic {name}"),
        "GROUP" => format!("--group {name}"),
        "TRANSACTIONAL_ID" => format!("--transactional-id {name}"),
        _ => "--cluster".to_string(),
    }
}

/// Kafka errors that a new producer and consumer meet again: configuration, authorization,
/// a topic that does not exist.
fn is_permanent(source: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match source {
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => true,
        e => matches!(
            e.rdkafka_error_code(),
            Some(
                C::TopicAuthorizationFailed
                    | C::GroupAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::TransactionalIdAuthorizationFailed
                    | C::SaslAuthenticationFailed
                    | C::Authentication
                    | C::InvalidConfig
                    | C::UnknownTopicOrPartition
                    | C::UnknownTopic
                    | C::InvalidTransactionTimeout
                    | C::UnsupportedVersion
            )
        ),
    }
}

fn kafka_action(op: KafkaOp, source: &KafkaError) -> Action {
    match source {
        KafkaError::Transaction(e) => {
            if e.is_fatal() {
                Action::Fatal
            } else if e.txn_requires_abort() {
                Action::Abort
            } else if e.is_retriable() {
                Action::Retry
            } else if op == KafkaOp::AbortTransaction {
                Action::Fatal
            } else {
                Action::Abort
            }
        }
        // `commit_transaction` flushes first; a flush timeout carries no flags. The records
        // may or may not have been written: the only safe move is to abort.
        KafkaError::Flush(_) => Action::Abort,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => Action::Retry,
        KafkaError::MessageProduction(_) => Action::Abort,
        KafkaError::MessageConsumptionFatal(_) => Action::Fatal,
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => Action::Fatal,
        _ => match op {
            KafkaOp::Poll | KafkaOp::Metadata | KafkaOp::FetchCommitted => Action::Retry,
            _ => Action::Abort,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_codes_are_fatal() {
        let e = Error::kafka(
            KafkaOp::SendOffsets,
            KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownMemberId),
        );
        assert!(matches!(e, Error::Fenced { .. }), "{e:?}");
        assert_eq!(e.action(), Action::Fatal);
    }

    #[test]
    fn what_a_restart_fixes_is_recovered_from_and_nothing_else() {
        let fenced = Error::kafka(
            KafkaOp::CommitTransaction,
            KafkaError::ConsumerCommit(RDKafkaErrorCode::ProducerFenced),
        );
        assert_eq!(fenced.recovery_cause(), Some("fenced"));
        let transport = Error::Kafka {
            op: KafkaOp::FetchCommitted,
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown),
        };
        assert_eq!(transport.recovery_cause(), Some("kafka"));
        // librdkafka's local "unknown partition" while a node of the cluster is down (seen
        // in tests/cluster.rs, restarting after a recovery): the cluster changes, a restart
        // later sees it whole. A topic that does not exist is Error::MissingTopic instead.
        let partition_away = Error::kafka(
            KafkaOp::Metadata,
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition),
        );
        assert_eq!(partition_away.recovery_cause(), Some("kafka"));
        let flush = Error::Kafka {
            op: KafkaOp::CommitTransaction,
            source: KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut),
        };
        let aborts = Error::AbortedInARow {
            aborts: 6,
            last: Box::new(flush),
        };
        assert_eq!(aborts.recovery_cause(), Some("kafka"));
        let stuck_state = Error::AbortedInARow {
            aborts: 6,
            last: Box::new(Error::State {
                op: "open without a changelog",
                message: "behind".into(),
            }),
        };
        assert_eq!(stuck_state.recovery_cause(), None);
        let denied = Error::Kafka {
            op: KafkaOp::InitTransactions,
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        };
        for permanent in [
            denied,
            Error::config("brokers", "is required"),
            Error::MissingTopic {
                topic: "t".into(),
                brokers: "b".into(),
            },
            Error::Worker("x".into()),
        ] {
            assert_eq!(permanent.recovery_cause(), None, "{permanent:?}");
        }
    }

    #[test]
    fn bad_records_are_told_from_worker_errors() {
        let too_large = Error::kafka(
            KafkaOp::Produce,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(too_large.is_bad_record());
        let full = Error::kafka(
            KafkaOp::Produce,
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
        );
        assert!(!full.is_bad_record());
        let refused = Error::Operator {
            operator: "o".into(),
            message: "no".into(),
        };
        assert!(refused.is_bad_record());
        assert!(!Error::config("k", "v").is_bad_record());
    }

    #[test]
    fn a_stale_generation_aborts_and_goes_on() {
        let e = Error::kafka(
            KafkaOp::SendOffsets,
            KafkaError::ConsumerCommit(RDKafkaErrorCode::IllegalGeneration),
        );
        assert!(matches!(e, Error::Kafka { .. }), "{e:?}");
        assert_eq!(e.action(), Action::Abort);
    }

    #[test]
    fn authorization_errors_stop_and_name_the_acl() {
        let e = Error::kafka(
            KafkaOp::Produce,
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed),
        )
        .naming("GROUP", "not-this")
        .naming("TOPIC", "counts");
        assert_eq!(e.action(), Action::Fatal);
        assert_eq!(e.recovery_cause(), None);
        let msg = e.to_string();
        assert!(msg.contains("needs WRITE on TOPIC `counts`"), "{msg}");
        assert!(msg.contains("--operation Write --topic counts"), "{msg}");
        let e = Error::kafka(
            KafkaOp::InitTransactions,
            KafkaError::MetadataFetch(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        );
        assert!(
            matches!(
                &e,
                Error::NotAuthorized {
                    resource_type: "TRANSACTIONAL_ID",
                    operation: "WRITE",
                    resource: None,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(acl_operation("DESCRIBE_CONFIGS"), "DescribeConfigs");
    }

    #[test]
    fn flush_timeout_aborts() {
        let e = Error::kafka(
            KafkaOp::CommitTransaction,
            KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
        );
        assert_eq!(e.action(), Action::Abort);
    }

    #[test]
    fn decode_errors_name_the_record() {
        let e = Error::Decode {
            part: "value",
            topic: "in".into(),
            partition: 3,
            offset: 42,
            message: "invalid utf-8".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot decode the value of record in/3@42: invalid utf-8"
        );
        assert_eq!(e.action(), Action::Fatal);
    }
}
