//! tern's HTTP server: SPARQL 1.1 Protocol, Graph Store Protocol, a query page, health, readiness and
//! Prometheus metrics, with write authentication, limits and graceful shutdown.
//!
//! Handlers hold no query logic: they negotiate formats, enforce limits and hand text to `tern_query` on
//! blocking threads; results stream back through a bounded channel, so a query returning millions of rows
//! starts answering at once and the server's memory stays flat.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tern_server::{ServerConfig, ServerHandle};
//! let store = Arc::new(tern_store::Store::open("/tmp/example-store")?);
//! let server = ServerHandle::start(store, ServerConfig::default())?;
//! println!("listening on http://{}", server.addr());
//! server.shutdown();
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

// Handlers pass finished error responses up with `?`; they are built once per failed request, so boxing
// them would add an allocation and buy nothing.
#![allow(clippy::result_large_err)]

mod gsp;
mod hooks;
mod metrics;
mod negotiate;
mod sparql;
mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tern_query::QueryError;
use tern_store::Store;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

/// Server settings. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// When set, updates and Graph Store writes need `Authorization: Bearer <token>`.
    pub write_token: Option<String>,
    /// Serve queries only: every write answers 403.
    pub read_only: bool,
    /// Longest a query or update may run; evaluation is cancelled then (503).
    pub query_timeout: Duration,
    /// Queries evaluated at once. More wait up to `queue_wait` for a slot, then get 503 with
    /// `Retry-After`. More evaluations than cores only time-slice, so the default is twice the cores.
    pub max_concurrent_queries: usize,
    /// How long a query may wait for an evaluation slot.
    pub queue_wait: Duration,
    /// Per-client token bucket: (requests per second, burst). `None` disables it.
    pub rate_limit: Option<(f64, f64)>,
    /// Largest request body in bytes (queries, updates and uploads).
    pub body_limit: usize,
    /// Origins allowed by CORS; empty disables CORS.
    pub cors_origins: Vec<String>,
    /// Directories `LOAD <file:...>` may read from; empty refuses every file.
    pub load_allow: Vec<PathBuf>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Generators `POST /hooks/generate/{name}` may run: (name, generator folder, output root).
    pub generators: Vec<(String, PathBuf, PathBuf)>,
    /// Secret verifying the Standard Webhooks signature of `POST /hooks/generate/...` (`whsec_<base64>` or
    /// raw); `None` disables that endpoint (403).
    pub trigger_secret: Option<String>,
    /// Query result cache budget in bytes (in memory; also persisted in the store); 0 disables it.
    pub cache_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            write_token: None,
            read_only: false,
            query_timeout: Duration::from_secs(30),
            max_concurrent_queries: 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_wait: Duration::from_secs(2),
            rate_limit: None,
            body_limit: 1 << 30,
            cors_origins: Vec::new(),
            load_allow: Vec::new(),
            shutdown_grace: Duration::from_secs(10),
            generators: Vec::new(),
            trigger_secret: None,
            cache_bytes: 256 << 20,
        }
    }
}

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another server running there? pick another --bind)"
    )]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the server runtime: {0}")]
    Runtime(std::io::Error),
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Shared state of all handlers.
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub config: ServerConfig,
    pub queries: Arc<Semaphore>,
    pub metrics: metrics::Metrics,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    pub shutting_down: AtomicBool,
    next_request: AtomicU64,
    pub next_graph: AtomicU64,
    /// Parsed queries (L1) and serialized results (L2 memory, L3 in the store).
    pub cache: tern_query::cache::Cache,
}

pub(crate) type Shared = Arc<AppState>;

/// The router with every endpoint and middleware, for embedding in another axum application.
fn router(state: Shared) -> Router {
    let mut app = Router::new()
        .route("/", get(page))
        .route(
            "/sparql",
            get(sparql::get_handler).post(sparql::post_handler),
        )
        .route(
            "/sparql/",
            get(sparql::get_handler).post(sparql::post_handler),
        )
        .route(
            "/query",
            get(sparql::get_handler).post(sparql::post_handler),
        )
        .route("/update", axum::routing::post(sparql::post_handler))
        .route(
            "/store",
            get(gsp::get)
                .head(gsp::head)
                .put(gsp::put)
                .post(gsp::post)
                .delete(gsp::delete),
        )
        .route(
            "/store/{*graph}",
            get(gsp::get)
                .head(gsp::head)
                .put(gsp::put)
                .post(gsp::post)
                .delete(gsp::delete),
        )
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_handler))
        .route(
            "/hooks/generate/{generator}",
            axum::routing::post(hooks::generate),
        )
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(DefaultBodyLimit::max(state.config.body_limit));
    if !state.config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(tower_http::cors::Any)
                .allow_headers(tower_http::cors::Any),
        );
    }
    app.with_state(state)
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("page.html"),
    )
}

async fn ready(State(state): State<Shared>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        match state.store.reader().len() {
            Ok(_) => "ready\n".into_response(),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {e}\n"),
            )
                .into_response(),
        }
    }
}

async fn metrics_handler(State(state): State<Shared>) -> Response {
    let quads = state.store.reader().len().unwrap_or(0);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(quads, &state.cache.stats()),
    )
        .into_response()
}

/// Every request: a request id and a tracing span, the per-client rate limit, metrics and an access log.
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let id = state.next_request.fetch_add(1, Ordering::Relaxed) + 1;
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let span = tracing::info_span!("request", id, %method, endpoint = %endpoint);
    let start = Instant::now();
    let exempt = matches!(endpoint.as_str(), "/health" | "/ready" | "/metrics");
    let mut response = match (client, state.config.rate_limit, exempt) {
        (Some(ip), Some((rate, burst)), false) if !take_token(&state, ip, rate, burst) => {
            state.metrics.rejected_rate.fetch_add(1, Ordering::Relaxed);
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded: slow down and retry\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        _ => next.run(request).instrument(span.clone()).await,
    };
    let status = response.status().as_u16();
    state.metrics.observe(&endpoint, status, start.elapsed());
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", v);
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            ms = start.elapsed().as_secs_f64() * 1e3,
            "request done"
        )
    });
    response
}

/// Token bucket per client address.
fn take_token(state: &AppState, ip: IpAddr, rate: f64, burst: f64) -> bool {
    let Ok(mut buckets) = state.buckets.lock() else {
        return true;
    };
    let now = Instant::now();
    let (tokens, last) = buckets.entry(ip).or_insert((burst, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

/// Refuses a write unless the server allows writes and the request carries the write token.
pub(crate) fn check_write(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    if state.config.read_only {
        return Err(error(
            StatusCode::FORBIDDEN,
            "this server is read-only: writes are disabled",
        ));
    }
    if let Some(token) = &state.config.write_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "writes need an `Authorization: Bearer <token>` header",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Err(r);
            }
            Some(t) if !constant_time_eq(t.as_bytes(), token.as_bytes()) => {
                return Err(error(StatusCode::FORBIDDEN, "wrong write token"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A plain-text error response.
pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// The HTTP status of a query or update error.
pub(crate) fn query_error(e: &QueryError) -> Response {
    let status = match e {
        QueryError::Syntax(_) | QueryError::Unsupported(_) | QueryError::Update(_) => {
            StatusCode::BAD_REQUEST
        }
        QueryError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        QueryError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!("{e}");
    }
    error(status, e)
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    trigger: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl ServerHandle {
    /// Binds `config.bind` and serves `store` on a background runtime; returns once listening.
    pub fn start(store: Arc<Store>, config: ServerConfig) -> Result<ServerHandle, ServerError> {
        Self::start_with(store, config, false)
    }

    /// Like [`ServerHandle::start`], and also shuts down gracefully on SIGTERM or Ctrl-C.
    pub fn start_with_signals(
        store: Arc<Store>,
        config: ServerConfig,
    ) -> Result<ServerHandle, ServerError> {
        Self::start_with(store, config, true)
    }

    fn start_with(
        store: Arc<Store>,
        config: ServerConfig,
        signals: bool,
    ) -> Result<ServerHandle, ServerError> {
        let listener =
            std::net::TcpListener::bind(config.bind).map_err(|source| ServerError::Bind {
                addr: config.bind,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(ServerError::Runtime)?;
        let addr = listener.local_addr().map_err(ServerError::Runtime)?;
        // Queries, updates and uploads run on blocking threads; bounding the pool keeps a burst of requests
        // from spawning hundreds of threads (each with its own allocator arenas) on a small machine.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tern-http")
            .max_blocking_threads(config.max_concurrent_queries.max(1) + 16)
            .build()
            .map_err(ServerError::Runtime)?;
        let trigger = Arc::new(Notify::new());
        let outer = Arc::clone(&trigger);
        let thread = std::thread::Builder::new()
            .name("tern-server".into())
            .spawn(move || runtime.block_on(serve(store, config, listener, outer, signals)))
            .map_err(ServerError::Runtime)?;
        Ok(ServerHandle {
            addr,
            trigger,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets in-flight requests finish (up to the grace period), returns.
    pub fn shutdown(mut self) {
        self.trigger.notify_one();
        if let Err(e) = self.join_inner() {
            tracing::warn!("server stopped with an error: {e}");
        }
    }

    /// Waits until the server stops (after a signal, for servers started with signals).
    pub fn join(mut self) -> Result<(), ServerError> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<(), ServerError> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServerError::Serve(std::io::Error::other(
                "server thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.trigger.notify_one();
            let _ = self.join_inner();
        }
    }
}

async fn serve(
    store: Arc<Store>,
    config: ServerConfig,
    listener: std::net::TcpListener,
    trigger: Arc<Notify>,
    signals: bool,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServerError::Serve)?;
    let grace = config.shutdown_grace;
    let cache = tern_query::cache::Cache::new(config.cache_bytes, Some(Store::clone(&store)));
    let state = Arc::new(AppState {
        cache,
        store,
        queries: Arc::new(Semaphore::new(config.max_concurrent_queries.max(1))),
        config,
        metrics: metrics::Metrics::default(),
        buckets: Mutex::new(HashMap::new()),
        shutting_down: AtomicBool::new(false),
        next_request: AtomicU64::new(0),
        next_graph: AtomicU64::new(0),
    });
    let app = router(Arc::clone(&state));
    let stop = Arc::new(Notify::new());
    let stop_serving = Arc::clone(&stop);
    // Without TCP_NODELAY the last small write of a response waits for the client's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop_serving.notified().await });
    let mut task = tokio::spawn(async move { server.await });
    tokio::select! {
        r = &mut task => {
            return match r {
                Ok(r) => r.map_err(ServerError::Serve),
                Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
            };
        }
        _ = trigger.notified() => {}
        _ = signal(signals) => {}
    }
    tracing::info!("shutting down: finishing in-flight requests (grace {grace:?})");
    state.shutting_down.store(true, Ordering::Relaxed);
    stop.notify_one();
    match tokio::time::timeout(grace, &mut task).await {
        Ok(Ok(r)) => r.map_err(ServerError::Serve),
        Ok(Err(e)) => Err(ServerError::Serve(std::io::Error::other(e))),
        Err(_) => {
            tracing::warn!("grace period over: dropping the requests still running");
            task.abort();
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C when `enabled`, never otherwise.
async fn signal(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
