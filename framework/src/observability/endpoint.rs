//! The Prometheus endpoint: `GET /metrics` in the Prometheus text format, on the one address
//! it is given (nothing else is opened), optionally behind a bearer token.

use crate::error::{Error, Result};
use crate::security::Secret;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often histograms and idle metrics are tidied (as the exporter's own listener does).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Serves every metric on `http://ADDR/metrics`, from a thread of its own.
///
/// ```no_run
/// use exactly_framework::observability::MetricsEndpoint;
/// use exactly_framework::Secret;
///
/// let addr = MetricsEndpoint::new("127.0.0.1:9000".parse().unwrap())
///     .with_bearer_token(Secret::file("/run/secrets/metrics-token"))
///     .install()?;
/// # Ok::<(), exactly_framework::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    addr: SocketAddr,
    bearer_token: Option<Secret>,
}

impl MetricsEndpoint {
    /// The endpoint on `addr` only (`127.0.0.1:PORT` keeps it on the host; port 0 picks one).
    pub fn new(addr: SocketAddr) -> Self {
        MetricsEndpoint {
            addr,
            bearer_token: None,
        }
    }

    /// Answers `401` to requests without `Authorization: Bearer <token>`.
    pub fn with_bearer_token(mut self, token: Secret) -> Self {
        self.bearer_token = Some(token);
        self
    }

    /// Binds the address, installs the global metrics recorder, and serves from a thread
    /// named `exactly-metrics`. Returns the bound address.
    ///
    /// # Errors
    /// [`Error::Config`] (`metrics_addr`) when the address cannot be bound or a recorder is
    /// other than this crate's already installed; (`metrics_bearer_token`) when the token cannot be read or is empty.
    pub fn install(self) -> Result<SocketAddr> {
        let token = match &self.bearer_token {
            Some(secret) => {
                let token = secret.reveal("metrics_bearer_token")?;
                if token.trim().is_empty() {
                    return Err(Error::config("metrics_bearer_token", "is empty"));
                }
                Some(token)
            }
            None => None,
        };
        let addr = self.addr;
        let cannot = |e: &dyn std::fmt::Display| {
            Error::config(
                "metrics_addr",
                format!("cannot serve metrics on {addr}: {e}"),
            )
        };
        let listener = std::net::TcpListener::bind(addr).map_err(|e| cannot(&e))?;
        let bound = listener.local_addr().map_err(|e| cannot(&e))?;
        listener.set_nonblocking(true).map_err(|e| cannot(&e))?;
        // One endpoint per process; a query server's `/metrics` shares its recorder.
        static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if INSTALLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(cannot(
                &"a metrics endpoint is already installed in this process",
            ));
        }
        let handle = prometheus_handle().map_err(|e| cannot(&e))?;
        std::thread::Builder::new()
            .name("exactly-metrics".into())
            .spawn(move || serve(listener, handle, token))
            .map_err(|e| cannot(&e))?;
        tracing::info!(addr = %bound, token = self.bearer_token.is_some(), "serving metrics on /metrics");
        Ok(bound)
    }
}

/// The process's Prometheus recorder, installed as the global metrics recorder on first
/// use (by this endpoint or a query server's `/metrics`).
static RECORDER: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// The handle of the Prometheus recorder this crate installed, installing it now if needed.
///
/// # Errors
/// A message when another metrics recorder is already installed in the process.
pub(crate) fn prometheus_handle() -> std::result::Result<PrometheusHandle, String> {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    Ok(RECORDER.get_or_init(|| handle).clone())
}

/// Tidies the recorder's histograms and idle metrics now and then, on the current Tokio
/// runtime (as the exporter's own listener does).
pub(crate) fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_INTERVAL).await;
            handle.run_upkeep();
        }
    });
}

fn serve(listener: std::net::TcpListener, handle: PrometheusHandle, token: Option<String>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the metrics endpoint cannot start its runtime");
            return;
        }
    };
    runtime.block_on(async move {
        spawn_upkeep(handle.clone());
        let token = Arc::new(token);
        let app = Router::new().route(
            "/metrics",
            get(move |headers: HeaderMap| async move {
                if !bearer_matches(&headers, token.as_deref()) {
                    return unauthorized();
                }
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }),
        );
        let served = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => axum::serve(l, app).await,
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
}

/// `401` with the scheme to use.
pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or wrong bearer token\n",
    )
        .into_response()
}

/// Whether the request carries `Authorization: Bearer <token>` (always, without a token).
/// The comparison takes the same time wherever the first difference is.
pub(crate) fn bearer_matches(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(bearer_matches(&HeaderMap::new(), None));
        assert!(!bearer_matches(&HeaderMap::new(), Some("s3cret")));
        assert!(bearer_matches(&with("Bearer s3cret"), Some("s3cret")));
        assert!(!bearer_matches(&with("Bearer s3cre"), Some("s3cret")));
        assert!(!bearer_matches(&with("Bearer s3cret!"), Some("s3cret")));
        assert!(!bearer_matches(&with("Basic s3cret"), Some("s3cret")));
        assert!(!bearer_matches(&with("s3cret"), Some("s3cret")));
    }
}
