//! SPARQL 1.1 Graph Store HTTP Protocol at `/store` (`?graph=IRI` or `?default`).
//!
//! Uploads are streamed to a temporary file (counted against the body limit), then parsed into one
//! transaction: the request body is never held in memory, and a malformed body changes nothing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use oxrdf::{NamedNode, Quad};
use tern_loaders::{read_quads, Format, GraphChoice, Input, LoadOptions};
use tern_store::{Store, TermId};

use crate::negotiate::media_type;
use crate::sparql::{choose, first, parse_pairs, Fmt, RDF_OFFERS};
use crate::{check_write, error, stream, Shared};

/// Quads handed to the transaction at once.
const BATCH: usize = 8192;

#[derive(Clone, Debug)]
enum Target {
    Default,
    Named(NamedNode),
}

impl Target {
    fn choice(&self) -> GraphChoice {
        match self {
            Target::Default => GraphChoice::Default,
            Target::Named(n) => GraphChoice::Named(n.clone().into()),
        }
    }
}

/// The graph a request names; `None` when it names none.
fn target(uri: &Uri) -> Result<Option<Target>, Response> {
    let params = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let default = params.iter().any(|(k, _)| k == "default");
    match (first(&params, "graph"), default) {
        (Some(_), true) => Err(error(
            StatusCode::BAD_REQUEST,
            "give either ?graph=IRI or ?default, not both",
        )),
        (Some(g), false) => NamedNode::new(g).map(|n| Some(Target::Named(n))).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("?graph=<{g}> is not a valid IRI: {e}"),
            )
        }),
        (None, true) => Ok(Some(Target::Default)),
        (None, false) => Ok(None),
    }
}

fn graph_exists(store: &Store, target: &Target) -> Result<bool, Response> {
    match target {
        Target::Default => Ok(true),
        Target::Named(n) => {
            let reader = store.reader();
            let internal = |e: tern_store::StoreError| error(StatusCode::INTERNAL_SERVER_ERROR, e);
            match reader.term_id(n.as_ref().into()).map_err(internal)? {
                Some(id) => reader.contains_named_graph(id).map_err(internal),
                None => Ok(false),
            }
        }
    }
}

fn required(uri: &Uri) -> Result<Target, Response> {
    target(uri)?.ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "name the graph with ?graph=IRI or ?default",
        )
    })
}

/// GET: the graph in the negotiated syntax.
pub(crate) async fn get(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    read(state, uri, headers, true).await
}

/// HEAD: the headers GET would send.
pub(crate) async fn head(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    read(state, uri, headers, false).await
}

async fn read(state: Shared, uri: Uri, headers: HeaderMap, with_body: bool) -> Response {
    let target = match required(&uri) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let params = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let format = match choose(&params, &headers, RDF_OFFERS) {
        Ok(Fmt::Rdf(f)) => f,
        Ok(Fmt::Results(_)) => Format::Turtle,
        Err(r) => return r,
    };
    match graph_exists(&state.store, &target) {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::NOT_FOUND, "no such graph in the store"),
        Err(r) => return r,
    }
    let content_type = [(header::CONTENT_TYPE, Fmt::Rdf(format).media_type())];
    if !with_body {
        return content_type.into_response();
    }
    let (mut writer, body) = stream::channel(Arc::new(AtomicBool::new(false)));
    let store = Arc::clone(&state.store);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        let reader = store.reader();
        if let Err(e) = tern_loaders::dump(&reader, format, &target.choice(), &mut writer) {
            tracing::warn!("graph stream ended early: {e}");
            writer.abort(e.to_string());
        }
    });
    (content_type, body).into_response()
}

/// PUT: replaces the graph with the body.
pub(crate) async fn put(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let target = match required(&uri) {
        Ok(t) => t,
        Err(r) => return r,
    };
    write(state, target, headers, body, true, None).await
}

/// POST: adds the body to the graph; without a graph, creates a new one and answers with its IRI.
pub(crate) async fn post(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match target(&uri) {
        Ok(Some(t)) => write(state, t, headers, body, false, None).await,
        Ok(None) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost")
                .to_owned();
            let n = state.next_graph.fetch_add(1, Ordering::Relaxed);
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let iri = format!("http://{host}/store/graph/{stamp:x}-{n}");
            match NamedNode::new(iri.clone()) {
                Ok(g) => write(state, Target::Named(g), headers, body, false, Some(iri)).await,
                Err(e) => error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot mint a graph IRI from Host {host}: {e}"),
                ),
            }
        }
        Err(r) => r,
    }
}

/// DELETE: removes the graph (the default graph is emptied).
pub(crate) async fn delete(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = check_write(&state, &headers) {
        return r;
    }
    let target = match required(&uri) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let store = Arc::clone(&state.store);
    let result = tokio::task::spawn_blocking(move || -> Result<bool, tern_store::StoreError> {
        let mut tx = store.transaction()?;
        let reader = tx.reader();
        match &target {
            Target::Default => tx.clear_graph(TermId::DEFAULT_GRAPH)?,
            Target::Named(n) => match reader.term_id(n.as_ref().into())? {
                Some(id) if reader.contains_named_graph(id)? => tx.drop_graph(id)?,
                _ => return Ok(false),
            },
        }
        tx.commit()?;
        Ok(true)
    })
    .await;
    match result {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => error(StatusCode::NOT_FOUND, "no such graph in the store"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the delete task failed"),
    }
}

async fn write(
    state: Shared,
    target: Target,
    headers: HeaderMap,
    body: Body,
    replace: bool,
    location: Option<String>,
) -> Response {
    if let Err(r) = check_write(&state, &headers) {
        return r;
    }
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing Content-Type: say which RDF syntax the body is in (e.g. text/turtle)",
        );
    };
    let Some(format) = Format::from_name(&content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {content_type}: send text/turtle, application/n-triples, \
                 application/n-quads, application/trig, application/rdf+xml or application/ld+json"
            ),
        );
    };
    let file = match spool(body, state.config.body_limit, format).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let store = Arc::clone(&state.store);
    let span = tracing::Span::current();
    let start = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        apply(&store, &target, file, format, replace)
    })
    .await;
    match result {
        Ok(Ok((created, quads))) => {
            state.metrics.quads_loaded.fetch_add(quads, Ordering::Relaxed);
            state
                .metrics
                .load_seconds_micros
                .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
            let mut r = if created {
                StatusCode::CREATED.into_response()
            } else {
                StatusCode::NO_CONTENT.into_response()
            };
            if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                r.headers_mut().insert(header::LOCATION, loc);
            }
            r
        }
        Ok(Err(r)) => r,
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the upload task failed"),
    }
}

/// Streams the body into a temporary file named for its syntax, refusing bodies over `limit`.
async fn spool(
    body: Body,
    limit: usize,
    format: Format,
) -> Result<tempfile::NamedTempFile, Response> {
    let internal = |e: std::io::Error| error(StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut file = tempfile::Builder::new()
        .prefix("tern-upload-")
        .suffix(&format!(".{}", format.extension()))
        .tempfile()
        .map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut size = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            )
        })?;
        size += chunk.len();
        if size > limit {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than the server's limit of {limit} bytes"),
            ));
        }
        // Small synchronous writes to a local temp file: cheaper than a blocking task per chunk.
        file.write_all(&chunk).map_err(internal)?;
    }
    file.flush().map_err(internal)?;
    Ok(file)
}

/// Parses the spooled body into one transaction. Returns whether the graph was created and how many
/// quads were parsed.
fn apply(
    store: &Store,
    target: &Target,
    file: tempfile::NamedTempFile,
    format: Format,
    replace: bool,
) -> Result<(bool, u64), Response> {
    let internal = |e: tern_store::StoreError| error(StatusCode::INTERNAL_SERVER_ERROR, e);
    let existed = graph_exists(store, target)?;
    let mut tx = store.transaction().map_err(internal)?;
    let graph = match target {
        Target::Default => TermId::DEFAULT_GRAPH,
        Target::Named(n) => tx.intern(n.as_ref().into()).map_err(internal)?,
    };
    if replace && existed {
        tx.clear_graph(graph).map_err(internal)?;
    }
    let input = Input::Path(file.path().to_path_buf());
    let options = LoadOptions {
        format: Some(format),
        base_iri: match target {
            Target::Named(n) => Some(n.as_str().to_owned()),
            Target::Default => None,
        },
        graph: match target {
            Target::Named(n) => Some(n.clone()),
            Target::Default => None,
        },
        lenient: false,
    };
    let reader = std::fs::File::open(file.path())
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let quads = read_quads(&input, format, &options, std::io::BufReader::new(reader))
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let mut batch: Vec<Quad> = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    for q in quads {
        let q = q.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid {}: {e}; nothing was changed", format.name()),
            )
        })?;
        batch.push(q);
        n += 1;
        if batch.len() == BATCH {
            tx.insert_all(batch.iter().map(Quad::as_ref))
                .map_err(internal)?;
            batch.clear();
        }
    }
    tx.insert_all(batch.iter().map(Quad::as_ref))
        .map_err(internal)?;
    if !existed {
        tx.create_graph(graph);
    }
    tx.commit().map_err(internal)?;
    Ok((!existed, n))
}
