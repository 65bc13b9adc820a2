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

/// The graph a request names; `None` when it names none. Under `/store/...` the request's own IRI is the
/// graph (direct identification); on `/store` itself `?graph=IRI` or `?default` name it (indirect).
fn target(uri: &Uri, headers: &HeaderMap) -> Result<Option<Target>, Response> {
    if uri.path().len() > "/store/".len() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let iri = format!("http://{host}{}", uri.path());
        return NamedNode::new(iri.clone())
            .map(|n| Some(Target::Named(n)))
            .map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("<{iri}> is not an IRI: {e}"),
                )
            });
    }
    let params = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let default = params.iter().any(|(k, _)| k == "default");
    match (first(&params, "graph"), default) {
        (Some(_), true) => Err(error(
            StatusCode::BAD_REQUEST,
            "give either ?graph=IRI or ?default, not both",
        )),
        (Some(g), false) => NamedNode::new(g)
            .map(|n| Some(Target::Named(n)))
            .map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("?graph=<{g}> is not a valid IRI: {e}"),
                )
            }),
        (None, true) => Ok(Some(Target::Default)),
        (None, false) => Ok(None),
    }
}

fn graph_exists(reader: &tern_store::Reader, target: &Target) -> Result<bool, Response> {
    match target {
        Target::Default => Ok(true),
        Target::Named(n) => {
            let internal = |e: tern_store::StoreError| error(StatusCode::INTERNAL_SERVER_ERROR, e);
            match reader.term_id(n.as_ref().into()).map_err(internal)? {
                Some(id) => reader.contains_named_graph(id).map_err(internal),
                None => Ok(false),
            }
        }
    }
}

fn required(uri: &Uri, headers: &HeaderMap) -> Result<Target, Response> {
    target(uri, headers)?.ok_or_else(|| {
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
    let target = match required(&uri, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let params = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let format = match choose(&params, &headers, RDF_OFFERS) {
        Ok(Fmt::Rdf(f)) => f,
        Ok(Fmt::Results(_)) => Format::Turtle,
        Err(r) => return r,
    };
    match graph_exists(&state.store.reader(), &target) {
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
    let target = match required(&uri, &headers) {
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
    match target(&uri, &headers) {
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
    let target = match required(&uri, &headers) {
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
    let Some(raw_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing Content-Type: say which RDF syntax the body is in (e.g. text/turtle)",
        );
    };
    let content_type = media_type(&raw_type);
    let files = if content_type == "multipart/form-data" {
        match multipart(body, &raw_type, state.config.body_limit).await {
            Ok(f) => f,
            Err(r) => return r,
        }
    } else {
        let format = match upload_format(&content_type) {
            Ok(f) => f,
            Err(r) => return r,
        };
        match spool(body.into_data_stream(), state.config.body_limit, format).await {
            Ok(f) => vec![(f, format)],
            Err(r) => return r,
        }
    };
    let base = match &target {
        Target::Named(n) => n.as_str().to_owned(),
        Target::Default => format!(
            "http://{}/store",
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost")
        ),
    };
    let store = Arc::clone(&state.store);
    let span = tracing::Span::current();
    let start = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        apply(&store, &target, &base, files, replace)
    })
    .await;
    match result {
        Ok(Ok((created, quads))) => {
            state
                .metrics
                .quads_loaded
                .fetch_add(quads, Ordering::Relaxed);
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

fn upload_format(content_type: &str) -> Result<Format, Response> {
    Format::from_name(content_type).ok_or_else(|| {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {content_type}: send text/turtle, application/n-triples, \
                 application/n-quads, application/trig, application/rdf+xml, application/ld+json or \
                 multipart/form-data with parts in those"
            ),
        )
    })
}

/// Streams a body into a temporary file named for its syntax, refusing bodies over `limit`.
async fn spool<S>(
    mut stream: S,
    limit: usize,
    format: Format,
) -> Result<tempfile::NamedTempFile, Response>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
{
    let internal = |e: std::io::Error| error(StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut file = tempfile::Builder::new()
        .prefix("tern-upload-")
        .suffix(&format!(".{}", format.extension()))
        .tempfile()
        .map_err(internal)?;
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
            return Err(too_large(limit));
        }
        // Small synchronous writes to a local temp file: cheaper than a blocking task per chunk.
        file.write_all(&chunk).map_err(internal)?;
    }
    file.flush().map_err(internal)?;
    Ok(file)
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than the server's limit of {limit} bytes"),
    )
}

/// `multipart/form-data` uploads (GSP §5.5): every part is an RDF document in its own syntax, all merged
/// into the graph in one transaction.
async fn multipart(
    body: Body,
    content_type: &str,
    limit: usize,
) -> Result<Vec<(tempfile::NamedTempFile, Format)>, Response> {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    }) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "multipart/form-data without a boundary parameter",
        ));
    };
    let mut data = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
        if data.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        data.extend_from_slice(&chunk);
    }
    let mut files = Vec::new();
    for (part_type, content) in split_parts(&data, &boundary) {
        let format = upload_format(&media_type(&part_type.unwrap_or_default()))?;
        let chunk: Result<bytes::Bytes, axum::Error> = Ok(bytes::Bytes::from(content));
        files.push((
            spool(futures_util::stream::iter([chunk]), limit, format).await?,
            format,
        ));
    }
    if files.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the multipart body has no parts",
        ));
    }
    Ok(files)
}

/// The parts of a multipart body as (Content-Type, content).
fn split_parts(data: &[u8], boundary: &str) -> Vec<(Option<String>, Vec<u8>)> {
    let delim = format!("--{boundary}").into_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&data[i..], &delim) {
        starts.push(i + p);
        i += p + delim.len();
    }
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let part = &data[w[0] + delim.len()..w[1]];
        if part.starts_with(b"--") {
            break;
        }
        let part = part
            .strip_prefix(b"\r\n")
            .or_else(|| part.strip_prefix(b"\n"))
            .unwrap_or(part);
        let part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        let (head, content) = match find(part, b"\r\n\r\n") {
            Some(h) => (&part[..h], &part[h + 4..]),
            None => match find(part, b"\n\n") {
                Some(h) => (&part[..h], &part[h + 2..]),
                None => (&part[..0], part),
            },
        };
        let content_type = String::from_utf8_lossy(head).lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        });
        parts.push((content_type, content.to_vec()));
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses the spooled documents into one transaction. Returns whether the graph was created and how
/// many quads were parsed.
fn apply(
    store: &Store,
    target: &Target,
    base: &str,
    files: Vec<(tempfile::NamedTempFile, Format)>,
    replace: bool,
) -> Result<(bool, u64), Response> {
    let internal = |e: tern_store::StoreError| error(StatusCode::INTERNAL_SERVER_ERROR, e);
    // Checked under the writer lock: two concurrent PUTs to a new graph must not both see it missing.
    let mut tx = store.transaction().map_err(internal)?;
    let existed = graph_exists(&tx.reader(), target)?;
    let graph = match target {
        Target::Default => TermId::DEFAULT_GRAPH,
        Target::Named(n) => tx.intern(n.as_ref().into()).map_err(internal)?,
    };
    if replace && existed {
        tx.clear_graph(graph).map_err(internal)?;
    }
    let mut n = 0u64;
    for (file, format) in files {
        n += insert_file(&mut tx, target, base, &file, format)?;
    }
    if !existed {
        tx.create_graph(graph);
    }
    tx.commit().map_err(internal)?;
    Ok((!existed, n))
}

fn insert_file(
    tx: &mut tern_store::Transaction<'_>,
    target: &Target,
    base: &str,
    file: &tempfile::NamedTempFile,
    format: Format,
) -> Result<u64, Response> {
    let internal = |e: tern_store::StoreError| error(StatusCode::INTERNAL_SERVER_ERROR, e);
    let input = Input::Path(file.path().to_path_buf());
    let options = LoadOptions {
        format: Some(format),
        // Relative IRIs in the body resolve against the graph's IRI, never the temporary file's path.
        base_iri: Some(base.to_owned()),
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
                format!(
                    "the body is not valid {}: {e}; nothing was changed",
                    format.name()
                ),
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
    Ok(n)
}
