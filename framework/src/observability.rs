//! Exposing the runtime's metrics (see [`Stats`](crate::Stats) for the list).
//!
//! The runtime reports through the `metrics` facade; nothing is collected until a recorder
//! is installed. With the `prometheus` feature, [`install_prometheus`] serves them on
//! `http://ADDR/metrics`. Tracing spans: `commit_cycle` (per cycle) and `rebalance` (per
//! revocation).

/// Serves every metric in the Prometheus text format on `addr` (e.g. `0.0.0.0:9000`).
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) (`metrics_addr`) when the listener cannot be
/// installed, e.g. the port is taken or a recorder is already installed.
#[cfg(feature = "prometheus")]
pub fn install_prometheus(addr: std::net::SocketAddr) -> crate::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| {
            crate::Error::config(
                "metrics_addr",
                format!("cannot serve metrics on {addr}: {e}"),
            )
        })
}
