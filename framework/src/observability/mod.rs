//! What the runtime reports: per-worker counters ([`Stats`]) and the metrics it emits
//! through the `metrics` facade ([`metric`]: every name, with its kind, labels and meaning).
//!
//! Nothing is collected until a recorder is installed. With the `prometheus` feature,
//! [`MetricsEndpoint`] (or [`install_prometheus`]) serves every metric on
//! `http://ADDR/metrics`, on that address only, optionally behind a bearer token. Tracing spans:
//! `commit_cycle` (per cycle) and `rebalance` (per revocation).

#[cfg(feature = "prometheus")]
pub(crate) mod endpoint;
mod stats;

#[cfg(feature = "prometheus")]
pub use endpoint::MetricsEndpoint;
pub use stats::{Stats, StatsSnapshot};

/// The metrics the runtime and the operators emit. `docs/metrics.md` is generated from
/// [`ALL`](metric::ALL) (a test fails when it drifts).
pub mod metric {
    /// A metric as documented: name, kind, labels, meaning.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Metric {
        /// The name.
        pub name: &'static str,
        /// `counter`, `gauge` or `histogram`.
        pub kind: &'static str,
        /// Its labels, comma-separated (empty: none).
        pub labels: &'static str,
        /// What it measures.
        pub help: &'static str,
    }

    /// Input records processed, counted when their cycle commits.
    pub const RECORDS_IN: &str = "exactly_records_in_total";
    /// Output records produced (output, side outputs, repartition hops, changelogs),
    /// counted when their cycle commits.
    pub const RECORDS_OUT: &str = "exactly_records_out_total";
    /// Commit cycles that committed.
    pub const TRANSACTIONS_COMMITTED: &str = "exactly_transactions_committed_total";
    /// Commit cycles that were aborted.
    pub const TRANSACTIONS_ABORTED: &str = "exactly_transactions_aborted_total";
    /// How long a commit cycle took.
    pub const COMMIT_LATENCY: &str = "exactly_commit_latency_seconds";
    /// Revocations handled.
    pub const REBALANCES: &str = "exactly_rebalances_total";
    /// How long processing stopped in the revoke callback.
    pub const REBALANCE_PAUSE: &str = "exactly_rebalance_pause_seconds";
    /// Messages the consumer delivered again, skipped.
    pub const DUPLICATE_DELIVERIES_SKIPPED: &str = "exactly_duplicate_deliveries_skipped_total";
    /// Records that could not be processed, skipped or dead-lettered.
    pub const BAD_RECORDS: &str = "exactly_bad_records_total";
    /// Records written with a timestamp older than their topic's retention.ms.
    pub const RECORDS_PAST_RETENTION: &str = "exactly_records_past_retention_total";
    /// Recoveries in place (new producer and consumer, rejoin), by cause.
    pub const RECOVERIES: &str = "exactly_recoveries_total";
    /// The consumer lag of an assigned partition.
    pub const PARTITION_LAG: &str = "exactly_partition_lag";
    /// Changelog records replayed into local state.
    pub const RESTORED_RECORDS: &str = "exactly_restored_records_total";
    /// Rows of a global table.
    pub const TABLE_ROWS: &str = "exactly_table_rows";
    /// Records of a global table's topic without a key, skipped.
    pub const TABLE_RECORDS_SKIPPED: &str = "exactly_table_records_skipped_total";
    /// Records that arrived after their window closed.
    pub const WINDOW_LATE_RECORDS: &str = "exactly_window_late_records_total";
    /// How far a standby copy of a changelog partition is behind its end.
    pub const STANDBY_LAG: &str = "exactly_standby_lag";

    /// Every metric, in the order `docs/metrics.md` lists them.
    pub const ALL: &[Metric] = &[
        Metric { name: RECORDS_IN, kind: "counter", labels: "", help: "input records processed, counted when their cycle commits" },
        Metric { name: RECORDS_OUT, kind: "counter", labels: "", help: "records produced (output, side outputs, repartition hops, changelogs), counted when their cycle commits" },
        Metric { name: TRANSACTIONS_COMMITTED, kind: "counter", labels: "", help: "commit cycles that committed" },
        Metric { name: TRANSACTIONS_ABORTED, kind: "counter", labels: "", help: "commit cycles that were aborted (and replayed)" },
        Metric { name: COMMIT_LATENCY, kind: "histogram", labels: "", help: "seconds a commit cycle took" },
        Metric { name: REBALANCES, kind: "counter", labels: "", help: "revocations handled" },
        Metric { name: REBALANCE_PAUSE, kind: "histogram", labels: "", help: "seconds processing stopped in the revoke callback" },
        Metric { name: DUPLICATE_DELIVERIES_SKIPPED, kind: "counter", labels: "", help: "messages the consumer delivered again, skipped (see architecture.md)" },
        Metric { name: BAD_RECORDS, kind: "counter", labels: "topic, policy", help: "records that could not be processed (decode, operator or encode error, refused by the producer), skipped or written to the dead-letter topic, counted when their cycle commits" },
        Metric { name: RECORDS_PAST_RETENTION, kind: "counter", labels: "", help: "records written with a timestamp older than their topic's retention.ms (the broker deletes them soon after; a warning names the topic once)" },
        Metric { name: RECOVERIES, kind: "counter", labels: "cause", help: "times a worker recovered in place (new producer and consumer, rejoin) from an error a restart fixes: fenced, transaction_timed_out, commit_outcome_unknown, membership_lost, kafka, broker_unavailable, panic" },
        Metric { name: PARTITION_LAG, kind: "gauge", labels: "topic, partition", help: "consumer lag of an assigned partition (librdkafka statistics, every 5 s)" },
        Metric { name: RESTORED_RECORDS, kind: "counter", labels: "", help: "changelog records replayed into local state" },
        Metric { name: TABLE_ROWS, kind: "gauge", labels: "topic", help: "rows of a global table" },
        Metric { name: TABLE_RECORDS_SKIPPED, kind: "counter", labels: "topic", help: "records of a global table's topic without a key, skipped" },
        Metric { name: WINDOW_LATE_RECORDS, kind: "counter", labels: "operator", help: "records that arrived after their window closed (dropped, or sent to the late topic)" },
        Metric { name: STANDBY_LAG, kind: "gauge", labels: "topic, partition", help: "changelog records a standby copy of a partition's state is behind (every 2 s; see docs/state.md)" },
    ];

    /// `docs/metrics.md`'s table of [`ALL`].
    pub fn markdown_table() -> String {
        let mut out =
            String::from("| metric | kind | labels | what it measures |\n|---|---|---|---|\n");
        for m in ALL {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                m.name, m.kind, m.labels, m.help
            ));
        }
        out
    }
}

/// Serves every metric in the Prometheus text format on `http://ADDR/metrics` (e.g.
/// `127.0.0.1:9000`), without a token: [`MetricsEndpoint`] is the same with options.
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) (`metrics_addr`) when the listener cannot be
/// installed, e.g. the port is taken or a recorder is already installed.
#[cfg(feature = "prometheus")]
pub fn install_prometheus(addr: std::net::SocketAddr) -> crate::Result<()> {
    MetricsEndpoint::new(addr).install().map(drop)
}
