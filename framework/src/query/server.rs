//! The query server: committed state over HTTP, on a thread of its own.
//!
//! - `GET /stores/{store}/keys/{key}`: `200 {"key","value","partition"}` with the committed
//!   value, `404` for a key the state does not hold, `307` to the owner's query address
//!   when another instance owns the key's partition, `503` + `Retry-After` while the
//!   partition restores or has no owner (a rebalance).
//! - `GET /stores/{store}/keys?from=&to=&limit=`: this instance's committed entries, in
//!   stored-key order, `from` and `to` inclusive (default limit 100, at most 10,000).
//! - `GET /health`: `200` when every partition of this worker is ready, `503` while some
//!   restore; `GET /metrics`: Prometheus text.
//!
//! `{store}` is the operator's name (or `operator.state` when it has several states); a key
//! is decoded with the stage's key serde (a string as it is, a JSON key as JSON).

use super::directory::Directory;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::state::queryable::{committed_value, partition_of, Local, QueryRegistry};
use crate::state::store;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Default and largest `limit` of a range query.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// A running query server; stops when dropped.
#[derive(Debug)]
pub(crate) struct QueryServer {
    /// The address it listens on.
    pub(crate) bound: SocketAddr,
    /// The address it tells other instances (in the consumer's client id).
    pub(crate) advertised: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for QueryServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct App {
    registry: Arc<QueryRegistry>,
    directory: Directory,
    advertised: String,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Binds `config.query_server` and serves `registry` from a thread named `exactly-query`.
///
/// # Errors
/// [`Error::Config`] (`query_server`) when the address cannot be bound, or
/// (`query_advertised_address`) when the server listens on every interface and no
/// advertised address says how to reach it.
pub(crate) fn start(config: &Config, registry: Arc<QueryRegistry>) -> Result<Option<QueryServer>> {
    let Some((bind, advertised)) = config.query_addresses()? else {
        return Ok(None);
    };
    let cannot = |e: &dyn std::fmt::Display| {
        Error::config("query_server", format!("cannot listen on {bind}: {e}"))
    };
    let listener = std::net::TcpListener::bind(bind).map_err(|e| cannot(&e))?;
    let bound = listener.local_addr().map_err(|e| cannot(&e))?;
    listener.set_nonblocking(true).map_err(|e| cannot(&e))?;
    let advertised = match advertised {
        Some(a) => a,
        None if bound.ip().is_unspecified() => {
            return Err(Error::config(
                "query_advertised_address",
                format!("the query server listens on every interface ({bound}): set query_advertised_address to the host:port other instances reach it at"),
            ))
        }
        None => bound.to_string(),
    };
    let app = Arc::new(App {
        registry,
        directory: Directory::new(config)?,
        advertised: advertised.clone(),
        metrics: crate::observability::endpoint::prometheus_handle().ok(),
    });
    let (stop, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name("exactly-query".into())
        .spawn(move || serve(listener, app, stopped))
        .map_err(|e| cannot(&e))?;
    tracing::info!(%bound, %advertised, "serving interactive queries on /stores");
    Ok(Some(QueryServer {
        bound,
        advertised,
        stop: Some(stop),
    }))
}

fn serve(listener: std::net::TcpListener, app: Arc<App>, stopped: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the query server cannot start its runtime");
            return;
        }
    };
    runtime.block_on(async move {
        if let Some(handle) = &app.metrics {
            crate::observability::endpoint::spawn_upkeep(handle.clone());
        }
        let router = Router::new()
            .route("/stores/{store}/keys/{key}", get(get_key))
            .route("/stores/{store}/keys", get(range))
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .with_state(app);
        let served = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => {
                axum::serve(l, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "the query server stopped");
        }
    });
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn retry_later(message: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(json!({ "error": message })),
    )
        .into_response()
}

/// Runs blocking work (store reads, a group description) off the server's one thread.
async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        )
    })
}

async fn get_key(
    State(app): State<Arc<App>>,
    Path((store, key)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    blocking(move || app.get_key(&store, &key, &path)).await
}

/// A range query's parameters.
#[derive(Deserialize)]
struct RangeParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

async fn range(
    State(app): State<Arc<App>>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
) -> Response {
    blocking(move || app.range(&store, &params)).await
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let (partitions, restoring) = app.registry.health();
    let (status, state) = if restoring == 0 {
        (StatusCode::OK, "running")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "restoring")
    };
    answer(
        status,
        json!({ "state": state, "partitions": partitions, "restoring": restoring }),
    )
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    match &app.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => answer(
            StatusCode::NOT_FOUND,
            json!({ "error": "another metrics recorder is installed in this process" }),
        ),
    }
}

impl App {
    /// The state a URL names, or the answer saying there is none.
    fn store(&self, name: &str) -> std::result::Result<(String, String), Box<Response>> {
        self.registry.resolve(name).map_err(|known| {
            Box::new(answer(
                StatusCode::NOT_FOUND,
                json!({ "error": format!("no queryable store `{name}`; stores: [{}]", known.join(", ")) }),
            ))
        })
    }

    fn get_key(&self, name: &str, text: &str, path: &str) -> Response {
        let id = match self.store(name) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let Some((topic, partitions, codec)) = self.registry.store(&id) else {
            return retry_later(format!("store `{name}` closed meanwhile"));
        };
        let key = match codec.key(text) {
            Ok(k) => k,
            Err(e) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("`{text}` does not decode with the store's key serde: {e}") }),
                )
            }
        };
        let partition = partition_of(&key.wire, partitions);
        match self.registry.local(&id, partition) {
            Local::Ready(tree) => match committed_value(&tree, &key.stored) {
                Ok(Some(bytes)) => match codec.value_json(&bytes) {
                    Ok(value) => answer(
                        StatusCode::OK,
                        json!({ "key": key.json, "value": value, "partition": partition }),
                    ),
                    Err(e) => answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "error": format!("the stored value does not decode: {e}") }),
                    ),
                },
                Ok(None) => answer(
                    StatusCode::NOT_FOUND,
                    json!({ "error": "no such key", "key": key.json, "partition": partition }),
                ),
                Err(e) => answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": e }),
                ),
            },
            Local::Restoring => retry_later(format!(
                "partition {partition} of store `{name}` is being restored here"
            )),
            Local::Elsewhere => match self.directory.owner(&topic, partition) {
                Ok(Some(owner)) if owner != self.advertised => (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, format!("http://{owner}{path}"))],
                    Json(json!({ "owner": owner, "partition": partition })),
                )
                    .into_response(),
                Ok(_) => retry_later(format!(
                    "partition {partition} of store `{name}` has no owner serving queries right now (a rebalance moves it)"
                )),
                Err(e) => retry_later(format!(
                    "cannot tell which instance owns partition {partition}: {e}"
                )),
            },
        }
    }

    fn range(&self, name: &str, params: &RangeParams) -> Response {
        let id = match self.store(name) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let Some((_, _, codec)) = self.registry.store(&id) else {
            return retry_later(format!("store `{name}` closed meanwhile"));
        };
        let bound = |text: &Option<String>| -> std::result::Result<Option<Vec<u8>>, Box<Response>> {
            match text {
                None => Ok(None),
                Some(t) => codec.key(t).map(|k| Some(k.stored)).map_err(|e| {
                    Box::new(answer(
                        StatusCode::BAD_REQUEST,
                        json!({ "error": format!("`{t}` does not decode with the store's key serde: {e}") }),
                    ))
                }),
            }
        };
        let (from, to) = match (bound(&params.from), bound(&params.to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(r), _) | (_, Err(r)) => return *r,
        };
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let (ready, restoring) = self.registry.local_partitions(&id);
        let mut entries: Vec<(Vec<u8>, Vec<u8>, i32)> = Vec::new();
        for (partition, tree) in &ready {
            match store::scan_range(tree, from.as_deref(), to.as_deref(), limit) {
                Ok(found) => entries.extend(found.into_iter().map(|(k, v)| (k, v, *partition))),
                Err(e) => {
                    return answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "error": e.to_string() }),
                    )
                }
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.truncate(limit);
        let mut out = Vec::with_capacity(entries.len());
        for (k, v, partition) in entries {
            match (codec.key_json(&k), codec.value_json(&v)) {
                (Ok(key), Ok(value)) => {
                    out.push(json!({ "key": key, "value": value, "partition": partition }))
                }
                (Err(e), _) | (_, Err(e)) => {
                    return answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "error": format!("a stored entry does not decode: {e}") }),
                    )
                }
            }
        }
        let partitions: Vec<i32> = ready.iter().map(|(p, _)| *p).collect();
        answer(
            StatusCode::OK,
            json!({ "entries": out, "partitions": partitions, "restoring": restoring }),
        )
    }
}
