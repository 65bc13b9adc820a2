//! SPARQL 1.1 Protocol: queries by GET, direct POST and form POST; updates by direct and form POST; the
//! service description.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use oxrdf::NamedNode;
use tern_loaders::Format;
use tern_query::cache::{Entry, ResultKey};
use tern_query::{Query, QueryOptions, ResultFormat, UpdateOptions};

use crate::negotiate::{media_type, negotiate};
use crate::{check_write, error, query_error, stream, Shared};

/// A response format: query results or an RDF syntax.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fmt {
    Results(ResultFormat),
    Rdf(Format),
}

impl Fmt {
    pub(crate) fn media_type(self) -> String {
        let m = match self {
            Fmt::Results(f) => f.media_type(),
            Fmt::Rdf(f) => f.media_type(),
        };
        if m.starts_with("text/") && !m.contains("charset") {
            format!("{m}; charset=utf-8")
        } else {
            m.to_owned()
        }
    }
}

const RESULT_OFFERS: &[(&str, Fmt)] = &[
    (
        "application/sparql-results+json",
        Fmt::Results(ResultFormat::Json),
    ),
    ("application/json", Fmt::Results(ResultFormat::Json)),
    (
        "application/sparql-results+xml",
        Fmt::Results(ResultFormat::Xml),
    ),
    ("application/xml", Fmt::Results(ResultFormat::Xml)),
    ("text/xml", Fmt::Results(ResultFormat::Xml)),
    ("text/csv", Fmt::Results(ResultFormat::Csv)),
    ("text/tab-separated-values", Fmt::Results(ResultFormat::Tsv)),
];

/// RDF syntaxes offered for graphs (CONSTRUCT, DESCRIBE, Graph Store GET), Turtle first.
pub(crate) const RDF_OFFERS: &[(&str, Fmt)] = &[
    ("text/turtle", Fmt::Rdf(Format::Turtle)),
    ("application/x-turtle", Fmt::Rdf(Format::Turtle)),
    ("application/n-triples", Fmt::Rdf(Format::NTriples)),
    ("text/plain", Fmt::Rdf(Format::NTriples)),
    ("application/n-quads", Fmt::Rdf(Format::NQuads)),
    ("application/trig", Fmt::Rdf(Format::TriG)),
    ("application/rdf+xml", Fmt::Rdf(Format::RdfXml)),
    ("application/xml", Fmt::Rdf(Format::RdfXml)),
    ("application/ld+json", Fmt::Rdf(Format::JsonLd)),
];

/// The format asked for with `?format=` (the page's download links) or negotiated from `Accept`.
pub(crate) fn choose(
    params: &[(String, String)],
    headers: &HeaderMap,
    offers: &[(&str, Fmt)],
) -> Result<Fmt, Response> {
    if let Some(name) = first(params, "format") {
        // `xml` names results XML where results are offered, RDF/XML where graphs are.
        let results = matches!(offers[0].1, Fmt::Results(_));
        let by_name = match ResultFormat::from_name(name) {
            Some(f) if results => Some(Fmt::Results(f)),
            _ => Format::from_name(name).map(Fmt::Rdf),
        };
        return match by_name {
            Some(f) if offers.iter().any(|(_, o)| same_kind(*o, f)) => Ok(f),
            _ => Err(not_acceptable(offers, &format!("format={name}"))),
        };
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    negotiate(accept, offers).ok_or_else(|| not_acceptable(offers, accept.unwrap_or("")))
}

fn same_kind(a: Fmt, b: Fmt) -> bool {
    matches!(
        (a, b),
        (Fmt::Results(_), Fmt::Results(_)) | (Fmt::Rdf(_), Fmt::Rdf(_))
    )
}

fn not_acceptable(offers: &[(&str, Fmt)], asked: &str) -> Response {
    let available: Vec<&str> = offers.iter().map(|(m, _)| *m).collect();
    error(
        StatusCode::NOT_ACCEPTABLE,
        format!(
            "cannot produce any of the accepted types ({asked}); available: {}",
            available.join(", ")
        ),
    )
}

pub(crate) fn parse_pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn first<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(params: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// IRIs of a repeated dataset parameter; `None` when absent.
fn iris(params: &[(String, String)], key: &str) -> Result<Option<Vec<NamedNode>>, Response> {
    let values = all(params, key);
    if values.is_empty() {
        return Ok(None);
    }
    values
        .into_iter()
        .map(|v| {
            NamedNode::new(v).map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("{key}: <{v}> is not a valid IRI: {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// GET: a query, or the service description when there is none.
pub(crate) async fn get_handler(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let params = parse_pairs(uri.query().unwrap_or("").as_bytes());
    if first(&params, "update").is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "updates must be sent with POST (application/sparql-update or a form)",
        );
    }
    let queries = all(&params, "query");
    match queries.len() {
        0 => service_description(&headers),
        1 => {
            let text = queries[0].to_owned();
            run_query(state, text, &params, &headers, endpoint_iri(&headers, &uri)).await
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "more than one `query` parameter: send exactly one",
        ),
    }
}

/// POST: a query or an update, directly or as a form.
pub(crate) async fn post_handler(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
        .unwrap_or_default();
    let utf8 = |body: &Bytes| {
        String::from_utf8(body.to_vec()).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the request body is not UTF-8: {e}"),
            )
        })
    };
    match content_type.as_str() {
        "application/sparql-query" => match utf8(&body) {
            Ok(text) => {
                run_query(state, text, &params, &headers, endpoint_iri(&headers, &uri)).await
            }
            Err(r) => r,
        },
        "application/sparql-update" => match utf8(&body) {
            Ok(text) => {
                run_update(state, text, &params, &headers, endpoint_iri(&headers, &uri)).await
            }
            Err(r) => r,
        },
        "application/x-www-form-urlencoded" => {
            if let Err(r) = utf8(&body) {
                return r;
            }
            let form = parse_pairs(&body);
            let queries = all(&form, "query");
            let updates = all(&form, "update");
            let (q, u) = (
                queries.first().map(|s| (*s).to_owned()),
                updates.first().map(|s| (*s).to_owned()),
            );
            let (nq, nu) = (queries.len(), updates.len());
            params.extend(form);
            match (nq, nu) {
                (1, 0) => {
                    run_query(
                        state,
                        q.unwrap_or_default(),
                        &params,
                        &headers,
                        endpoint_iri(&headers, &uri),
                    )
                    .await
                }
                (0, 1) => {
                    run_update(
                        state,
                        u.unwrap_or_default(),
                        &params,
                        &headers,
                        endpoint_iri(&headers, &uri),
                    )
                    .await
                }
                (0, 0) => error(
                    StatusCode::BAD_REQUEST,
                    "the form has neither a `query` nor an `update` field",
                ),
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "the form must have exactly one `query` or one `update` field",
                ),
            }
        }
        "" => error(
            StatusCode::BAD_REQUEST,
            "missing Content-Type: use application/sparql-query, application/sparql-update or \
             application/x-www-form-urlencoded",
        ),
        other => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {other}: use application/sparql-query, \
                 application/sparql-update or application/x-www-form-urlencoded"
            ),
        ),
    }
}

/// Decrements the running-queries gauge when a query ends, however it ends.
struct Running(Shared);

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .metrics
            .queries_running
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The base IRI of requests: the endpoint's own IRI (SPARQL Protocol leaves it to the service).
fn endpoint_iri(headers: &HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}{}", uri.path())
}

async fn run_query(
    state: Shared,
    text: String,
    params: &[(String, String)],
    headers: &HeaderMap,
    base: String,
) -> Response {
    // L1: the parsed query.
    let parsed = match state.cache.parse(&text, Some(&base)) {
        Ok(q) => q,
        Err(e) => return query_error(&e),
    };
    let offers = match *parsed {
        Query::Construct { .. } | Query::Describe { .. } => RDF_OFFERS,
        _ => RESULT_OFFERS,
    };
    let format = match choose(params, headers, offers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (default_graphs, named_graphs) = match (
        iris(params, "default-graph-uri"),
        iris(params, "named-graph-uri"),
    ) {
        (Ok(d), Ok(n)) => (d, n),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    // The version is read before the snapshot is taken: results are at least this new, so an entry is
    // never labelled newer than its data (a commit in between only makes it unreachable).
    let version = state.store.data_version();
    let content_type = format.media_type();
    let key = ResultKey::new(
        &text,
        Some(&base),
        default_graphs.as_deref(),
        named_graphs.as_deref(),
        &content_type,
    );
    if let Some(hit) = cached(&state, key, version).await {
        // The key includes the media type, so the entry's is this one.
        return (
            [(header::CONTENT_TYPE, content_type)],
            Body::from(Bytes::from_owner(CachedBody(hit))),
        )
            .into_response();
    }
    let permit = tokio::time::timeout(
        state.config.queue_wait,
        Arc::clone(&state.queries).acquire_owned(),
    )
    .await;
    let Ok(Ok(permit)) = permit else {
        state.metrics.rejected_busy.fetch_add(1, Ordering::Relaxed);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many queries running: retry shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let (writer, body) = stream::channel(Arc::clone(&cancel));
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    let span = tracing::Span::current();
    let options = QueryOptions {
        base_iri: Some(base),
        default_graphs,
        named_graphs,
        timeout: Some(state.config.query_timeout),
        cancel: Some(cancel),
    };
    let task_state = Arc::clone(&state);
    tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        let _permit = permit;
        task_state
            .metrics
            .queries_running
            .fetch_add(1, Ordering::Relaxed);
        let _running = Running(Arc::clone(&task_state));
        let mut results =
            match tern_query::query_parsed(&task_state.store, Query::clone(&parsed), &options) {
                Ok(r) => r,
                Err(e) => {
                    let _ = head_tx.send(Err(e));
                    return;
                }
            };
        if let Err(e) = results.prefetch() {
            let _ = head_tx.send(Err(e));
            return;
        }
        if head_tx.send(Ok(())).is_err() {
            return;
        }
        let cap = task_state.cache.entry_cap();
        let mut tee = Tee {
            inner: writer,
            copy: task_state.cache.enabled().then(Vec::new),
            cap,
        };
        // The results serializers write a character at a time (JSON escaping); a buffer in front makes
        // each of those writes a short copy instead of a trip through the tee and the channel writer.
        let mut buffered = std::io::BufWriter::with_capacity(16 << 10, &mut tee);
        let outcome = match format {
            Fmt::Results(f) => results.write(&mut buffered, f),
            Fmt::Rdf(f) => results.write_graph(&mut buffered, f.to_oxrdfio()),
        }
        .and_then(|()| buffered.flush().map_err(tern_query::QueryError::from));
        drop(buffered);
        let Tee {
            inner: writer,
            copy,
            ..
        } = tee;
        match outcome {
            Err(e) => {
                tracing::warn!("result stream ended early: {e}");
                writer.abort(e.to_string());
            }
            Ok(()) => {
                // Fill the cache before the last chunk goes out (dropping the writer sends it): a client
                // that has the whole answer and asks again must hit. The L2 insert is in memory; L3 is
                // written by the cache's background thread.
                match copy {
                    Some(copy) => task_state.cache.put(key, version, &content_type, copy),
                    None if task_state.cache.enabled() => task_state.cache.note_oversized(),
                    None => {}
                }
                drop(writer);
            }
        }
    });
    match head_rx.await {
        Ok(Ok(())) => ([(header::CONTENT_TYPE, format.media_type())], body).into_response(),
        Ok(Err(e)) => query_error(&e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the query task failed"),
    }
}

/// A cached body handed to the response without copying.
struct CachedBody(Arc<Entry>);

impl AsRef<[u8]> for CachedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

/// L2, then L3 on a blocking thread (it reads the store).
async fn cached(state: &Shared, key: ResultKey, version: u64) -> Option<Arc<Entry>> {
    if let Some(hit) = state.cache.get_memory(&key, version) {
        return Some(hit);
    }
    if !state.cache.has_persistent() {
        return None;
    }
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || state.cache.get_persistent(&key, version))
        .await
        .ok()
        .flatten()
}

/// Copies what goes to the client, up to `cap` bytes: a larger result is not cached, so the copy is
/// dropped as soon as it is over (never buffering an unbounded result).
struct Tee<W> {
    inner: W,
    copy: Option<Vec<u8>>,
    cap: usize,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        if let Some(copy) = &mut self.copy {
            if copy.len() + n > self.cap {
                self.copy = None;
            } else {
                copy.extend_from_slice(&data[..n]);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

async fn run_update(
    state: Shared,
    text: String,
    params: &[(String, String)],
    headers: &HeaderMap,
    base: String,
) -> Response {
    if let Err(r) = check_write(&state, headers) {
        return r;
    }
    let parsed = match tern_query::parse_update(&text, Some(&base)) {
        Ok(u) => u,
        Err(e) => return query_error(&e),
    };
    let (using_graphs, using_named_graphs) = match (
        iris(params, "using-graph-uri"),
        iris(params, "using-named-graph-uri"),
    ) {
        (Ok(d), Ok(n)) => (d, n),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let has_using = parsed.operations.iter().any(|op| {
        matches!(
            op,
            tern_query::GraphUpdateOperation::DeleteInsert { using: Some(_), .. }
        )
    });
    if has_using && (using_graphs.is_some() || using_named_graphs.is_some()) {
        return error(
            StatusCode::BAD_REQUEST,
            "using-graph-uri / using-named-graph-uri conflict with USING or WITH in the update: \
             give the dataset in one place",
        );
    }
    let options = UpdateOptions {
        base_iri: Some(base),
        using_graphs,
        using_named_graphs,
        timeout: Some(state.config.query_timeout),
        load_allow: Some(state.config.load_allow.clone()),
        // A server must not fetch arbitrary URLs on a client's behalf.
        allow_http_load: false,
    };
    let span = tracing::Span::current();
    let store = Arc::clone(&state.store);
    let result = tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        tern_query::update_parsed(&store, &parsed, &options)
    })
    .await;
    match result {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => query_error(&e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the update task failed"),
    }
}

fn service_description(headers: &HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let text = format!(
        "@prefix sd: <http://www.w3.org/ns/sparql-service-description#> .\n\
         @prefix formats: <http://www.w3.org/ns/formats/> .\n\
         [] a sd:Service ;\n\
         \x20   sd:endpoint <http://{host}/sparql> ;\n\
         \x20   sd:supportedLanguage sd:SPARQL11Query, sd:SPARQL11Update ;\n\
         \x20   sd:resultFormat formats:SPARQL_Results_JSON, formats:SPARQL_Results_XML,\n\
         \x20       formats:SPARQL_Results_CSV, formats:SPARQL_Results_TSV, formats:Turtle,\n\
         \x20       formats:N-Triples, formats:N-Quads, formats:TriG, formats:RDF_XML, formats:JSON-LD ;\n\
         \x20   sd:defaultDataset [ a sd:Dataset ; sd:defaultGraph [ a sd:Graph ] ] .\n"
    );
    ([(header::CONTENT_TYPE, "text/turtle; charset=utf-8")], text).into_response()
}
