//! W3C SPARQL 1.1 Protocol and Graph Store Protocol conformance suites, driven by their manifests.
//!
//! Walks `sparql/sparql11/protocol/manifest.ttl` (`mf:ProtocolTest`) and
//! `sparql/sparql11/graph-store-protocol/manifest.ttl` (which includes `manifest-direct.ttl` and
//! `manifest-indirect.ttl`, `mf:GraphStoreProtocolTest`). Each test describes, in the `ht:` vocabulary
//! (http://www.w3.org/2011/http#), a connection with an ordered `ht:requests` list; the harness replays it
//! against a real server:
//! - a fresh store in its own temporary directory, with each `ut:graphData [ ut:graph <file>; rdfs:label
//!   "graph IRI" ]` loaded into the graph named by the label, served by `tern::server` on 127.0.0.1:0;
//! - every `ht:Request`: `ht:methodName`, `ht:absolutePath` (`/sparql/…` → `/sparql…`, `/gsp…` →
//!   `/store…`), `ht:headers` (`ht:fieldName` / `ht:fieldValue`), `ht:body` (`cnt:chars`, encoded in its
//!   `cnt:characterEncoding`: UTF-8, or UTF-16 big-endian with a byte order mark), and a `Host` header from
//!   the connection's `ht:connectionAuthority`. The client adds no `Accept` header of its own and follows
//!   no redirects;
//! - every `ht:resp` expectation: `mf:expectedStatus` (any of the listed `hts:` codes or classes such as
//!   `hts:StatusCode2xx`); `mf:expectedFormat` `"boolean"` (SPARQL XML or JSON results holding a boolean),
//!   `"tabular"` (XML, JSON, CSV or TSV results holding solutions) or `"RDF"` (RDF/XML, Turtle or
//!   N-Triples that parses); `mf:expectedBoolean`; response `ht:headers` (values compared exactly after
//!   trimming, except `Content-Type`: same media type, and any parameter the response carries must match —
//!   a missing `charset` is accepted since every RDF syntax in question is UTF-8 by definition); response
//!   `ht:body`: parsed as its `Content-Type` says and compared up to blank node renaming with the graph
//!   the server returned; `mf:expectedLocation "$VAR$"`: the response must carry a `Location` header, whose
//!   value then replaces `$VAR$` in the paths and bodies of later requests of the connection.
//!
//! Failures quote the request index, the request as sent, each unmet expectation and the actual response
//! (status, headers, body excerpt); a test's later requests still run after a failed expectation (their
//! own results help diagnose it) unless the connection failed or a template variable is missing.
//!
//! `mf:requires mf:DirectGraphIdentification` tests (graphs named by the request path, e.g.
//! `/gsp/person/1.ttl`) are skipped: the server identifies graphs only indirectly (`?graph=` / `?default`).
//! Tests whose `dawgt:approval` is withdrawn / rejected / obsoleted / not approved are not run. Any other
//! test allowed to fail is listed in `SKIP` with a reason.
//!
//! Prints `group: N passed, M failed, K skipped` per manifest, failures, and last a line
//! `N passed, M failed`; exits 1 on any failure not in `SKIP`. Arguments that do not start with `--` are
//! filters: only tests whose IRI contains one of them run
//! (`cargo test --release --workspace --test w3c_protocol -- update_`).
//!
//! Everything above the `server` module at the end is server-independent; `server` is the only part
//! that talks to tern.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use oxrdf::dataset::CanonicalizationAlgorithm;
use oxrdf::{Graph, NamedOrBlankNode, Term, Triple};
use oxrdfio::{RdfFormat, RdfParser};
use sparesults::{QueryResultsFormat, QueryResultsParser, ReaderQueryResultsParserOutput};
use ureq::http;

mod common;
use common::{
    blank_bnodes, entry_iri, graph_data, group_name, local_name, local_path, truncate, GraphData,
    ManifestFile, Outcome, DAWGT, MF, RDF, UT,
};

/// Tests allowed to fail, with the reason (exact test IRIs).
const SKIP: &[(&str, &str)] = &[];

/// Whether the server supports direct graph identification (graphs named by the request path).
const DIRECT_GRAPH_IDENTIFICATION: bool = true;

/// Per-request limit for the whole exchange (connect, send, receive), so a hanging server fails the test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Entry manifests (IRIs; mapped to files below `../shared/rdf-tests` by `local_path`).
const MANIFESTS: &[&str] = &[
    "http://www.w3.org/2009/sparql/docs/tests/data-sparql11/protocol/manifest.ttl",
    "http://www.w3.org/2009/sparql/docs/tests/data-sparql11/graph-store-protocol/manifest.ttl",
];

const HT: &str = "http://www.w3.org/2011/http#";
const HTS: &str = "http://www.w3.org/2011/http-statusCodes#";
const CNT: &str = "http://www.w3.org/2011/content#";

// ---------------------------------------------------------------------------------------------------
// Tests

/// One `ht:Request` and what its `ht:resp` expects.
#[derive(Clone, Debug, Default)]
struct Request {
    method: String,
    /// As written in the manifest (`/sparql/…`, `/gsp…`).
    path: String,
    headers: Vec<(String, String)>,
    /// `cnt:chars` and `cnt:characterEncoding`.
    body: Option<(String, String)>,
    expect: Expect,
}

#[derive(Clone, Debug, Default)]
struct Expect {
    /// `hts:` IRIs, any of which is acceptable; empty: any status.
    statuses: Vec<String>,
    format: Option<String>,
    boolean: Option<bool>,
    headers: Vec<(String, String)>,
    /// Expected RDF content, in the syntax of the expected `Content-Type` header.
    body: Option<String>,
    /// Template variable to bind to the `Location` header.
    location: Option<String>,
}

#[derive(Default)]
struct TestCase {
    iri: String,
    name: String,
    kind: String,
    approval: String,
    requires: Vec<String>,
    authority: Option<String>,
    graph_data: Vec<GraphData>,
    requests: Vec<Request>,
}

struct Group {
    name: String,
    tests: Vec<TestCase>,
}

fn headers(m: &ManifestFile, node: &NamedOrBlankNode) -> Vec<(String, String)> {
    m.list(m.object(node, &format!("{HT}headers")))
        .into_iter()
        .filter_map(ManifestFile::node)
        .filter_map(|h| {
            Some((
                m.literal(&h, &format!("{HT}fieldName"))?,
                m.literal(&h, &format!("{HT}fieldValue"))?,
            ))
        })
        .collect()
}

/// `ht:body [ cnt:chars …; cnt:characterEncoding … ]`.
fn body(m: &ManifestFile, node: &NamedOrBlankNode) -> Option<(String, String)> {
    let b = ManifestFile::node(m.object(node, &format!("{HT}body"))?)?;
    let chars = m.literal(&b, &format!("{CNT}chars"))?;
    let encoding = m
        .literal(&b, &format!("{CNT}characterEncoding"))
        .unwrap_or_else(|| "UTF-8".into());
    Some((chars, encoding))
}

fn request(m: &ManifestFile, node: &NamedOrBlankNode) -> Result<Request, String> {
    let mut req = Request {
        method: m
            .literal(node, &format!("{HT}methodName"))
            .ok_or("request without ht:methodName")?,
        path: m
            .literal(node, &format!("{HT}absolutePath"))
            .ok_or("request without ht:absolutePath")?,
        headers: headers(m, node),
        body: body(m, node),
        ..Request::default()
    };
    if let Some(resp) = m
        .object(node, &format!("{HT}resp"))
        .and_then(ManifestFile::node)
    {
        req.expect = Expect {
            statuses: m.iris(&resp, &format!("{MF}expectedStatus")),
            format: m.literal(&resp, &format!("{MF}expectedFormat")),
            boolean: m
                .literal(&resp, &format!("{MF}expectedBoolean"))
                .map(|b| b == "true" || b == "1"),
            headers: headers(m, &resp),
            body: body(m, &resp).map(|(chars, _)| chars),
            location: m.literal(&resp, &format!("{MF}expectedLocation")),
        };
    }
    Ok(req)
}

fn manifest_group(
    iri: &str,
    m: &ManifestFile,
    entries: Vec<Term>,
    seen_tests: &mut HashSet<String>,
) -> Result<Group, String> {
    let mut tests = Vec::new();
    for entry in entries {
        let Some(node) = ManifestFile::node(entry) else {
            continue;
        };
        let test_iri = entry_iri(iri, &node);
        if !seen_tests.insert(test_iri.clone()) {
            continue;
        }
        let mut test = TestCase {
            name: m.literal(&node, &format!("{MF}name")).unwrap_or_default(),
            kind: local_name(m.iri(&node, &format!("{RDF}type"))),
            approval: local_name(m.iri(&node, &format!("{DAWGT}approval"))),
            requires: m.iris(&node, &format!("{MF}requires")),
            graph_data: graph_data(m, &node, &format!("{UT}graphData")),
            ..TestCase::default()
        };
        if let Some(action) = m
            .object(&node, &format!("{MF}action"))
            .and_then(ManifestFile::node)
        {
            test.authority = m.literal(&action, &format!("{HT}connectionAuthority"));
            for r in m.list(m.object(&action, &format!("{HT}requests"))) {
                let r = ManifestFile::node(r).ok_or("ht:requests member is a literal")?;
                test.requests
                    .push(request(m, &r).map_err(|e| format!("{test_iri}: {e}"))?);
            }
        }
        test.iri = test_iri;
        tests.push(test);
    }
    Ok(Group {
        name: group_name(iri),
        tests,
    })
}

// ---------------------------------------------------------------------------------------------------
// Expectations

/// Whether `code` satisfies the `hts:` status `iri` (a code or a class like `hts:StatusCode2xx`).
fn status_matches(iri: &str, code: u16) -> Result<bool, String> {
    let name = iri
        .strip_prefix(HTS)
        .ok_or_else(|| format!("unknown status {iri}"))?;
    if let Some(class) = name
        .strip_prefix("StatusCode")
        .and_then(|c| c.strip_suffix("xx"))
    {
        let class: u16 = class.parse().map_err(|_| format!("unknown status {iri}"))?;
        return Ok(code / 100 == class);
    }
    let expected = match name {
        "Continue" => 100,
        "OK" => 200,
        "Created" => 201,
        "Accepted" => 202,
        "NoContent" => 204,
        "MovedPermanently" => 301,
        "Found" => 302,
        "SeeOther" => 303,
        "NotModified" => 304,
        "TemporaryRedirect" => 307,
        "BadRequest" => 400,
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "NotFound" => 404,
        "MethodNotAllowed" => 405,
        "NotAcceptable" => 406,
        "Conflict" => 409,
        "LengthLimitRequired" | "LengthRequired" => 411,
        "RequestEntityTooLarge" => 413,
        "UnsupportedMediaType" => 415,
        "InternalServerError" => 500,
        "NotImplemented" => 501,
        "ServiceUnavailable" => 503,
        _ => return Err(format!("unknown status {iri}")),
    };
    Ok(code == expected)
}

fn status_names(iris: &[String]) -> String {
    iris.iter()
        .map(|i| i.strip_prefix(HTS).unwrap_or(i))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A media type split into its lower-case essence and its parameters (lower-case names; values unquoted,
/// `charset` lower-cased).
fn media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_matches('"');
            let v = if k == "charset" {
                v.to_ascii_lowercase()
            } else {
                v.to_owned()
            };
            Some((k, v))
        })
        .collect();
    (essence, params)
}

/// `Content-Type` comparison: same media type; parameters the response carries must match the expected
/// ones (a response without `charset` is fine: the syntaxes in question are UTF-8 by definition).
fn content_type_matches(expected: &str, actual: &str) -> bool {
    let (e, e_params) = media_type(expected);
    let (a, a_params) = media_type(actual);
    e == a
        && a_params
            .iter()
            .all(|(k, v)| e_params.iter().any(|(ek, ev)| ek == k && ev == v))
}

/// The SPARQL results format of a response media type (the registered ones only).
fn results_format(essence: &str) -> Option<QueryResultsFormat> {
    match essence {
        "application/sparql-results+xml" => Some(QueryResultsFormat::Xml),
        "application/sparql-results+json" => Some(QueryResultsFormat::Json),
        "text/csv" => Some(QueryResultsFormat::Csv),
        "text/tab-separated-values" => Some(QueryResultsFormat::Tsv),
        _ => None,
    }
}

enum ParsedResults {
    Boolean(bool),
    Solutions,
}

fn parse_results(format: QueryResultsFormat, body: &[u8]) -> Result<ParsedResults, String> {
    match QueryResultsParser::from_format(format)
        .for_reader(body)
        .map_err(|e| format!("results do not parse: {e}"))?
    {
        ReaderQueryResultsParserOutput::Boolean(b) => Ok(ParsedResults::Boolean(b)),
        ReaderQueryResultsParserOutput::Solutions(s) => {
            for sol in s {
                sol.map_err(|e| format!("results do not parse: {e}"))?;
            }
            Ok(ParsedResults::Solutions)
        }
    }
}

fn parse_graph(format: RdfFormat, body: &[u8], base: &str) -> Result<Graph, String> {
    RdfParser::from_format(format)
        .with_base_iri(base)
        .map_err(|e| e.to_string())?
        .rename_blank_nodes()
        .for_slice(body)
        .map(|q| q.map(Triple::from))
        .collect::<Result<Graph, _>>()
        .map_err(|e| e.to_string())
}

fn graph_lines(graph: &Graph) -> Vec<String> {
    let mut lines: Vec<String> = graph.iter().map(|t| blank_bnodes(&t.to_string())).collect();
    lines.sort();
    lines
}

/// What came back.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!(
            "actual response: {} [{}] body: {:?}",
            self.status,
            headers.join("; "),
            truncate(String::from_utf8_lossy(&self.body).into_owned())
        )
    }
}

/// Checks `resp` against `expect`; returns the unmet expectations.
fn check(expect: &Expect, resp: &Response, url: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !expect.statuses.is_empty() {
        match expect
            .statuses
            .iter()
            .map(|s| status_matches(s, resp.status))
            .collect::<Result<Vec<bool>, String>>()
        {
            Ok(ok) if ok.contains(&true) => {}
            Ok(_) => problems.push(format!(
                "status: expected {}, got {}",
                status_names(&expect.statuses),
                resp.status
            )),
            Err(e) => problems.push(format!("harness: {e}")),
        }
    }
    if expect.location.is_some() && resp.header("location").is_none() {
        problems.push("expected a Location header, got none".into());
    }
    for (name, value) in &expect.headers {
        match resp.header(name) {
            None => problems.push(format!("header {name}: expected {value:?}, got none")),
            Some(actual) => {
                let ok = if name.eq_ignore_ascii_case("content-type") {
                    content_type_matches(value, actual)
                } else {
                    value.trim() == actual.trim()
                };
                if !ok {
                    problems.push(format!("header {name}: expected {value:?}, got {actual:?}"));
                }
            }
        }
    }
    let success = resp.status / 100 == 2;
    let content_type = resp.header("content-type").unwrap_or_default();
    let (essence, _) = media_type(content_type);
    if let Some(format) = &expect.format {
        if success {
            if let Err(e) = check_format(format, expect.boolean, &essence, &resp.body, url) {
                problems.push(format!("format {format:?}: {e}"));
            }
        }
    } else if let Some(b) = expect.boolean {
        if success {
            if let Err(e) = check_format("boolean", Some(b), &essence, &resp.body, url) {
                problems.push(format!("boolean: {e}"));
            }
        }
    }
    if let Some(expected_body) = &expect.body {
        if success {
            if let Err(e) = check_graph(expect, expected_body, &essence, &resp.body, url) {
                problems.push(format!("body: {e}"));
            }
        }
    }
    problems
}

fn check_format(
    format: &str,
    boolean: Option<bool>,
    essence: &str,
    body: &[u8],
    url: &str,
) -> Result<(), String> {
    match format {
        "boolean" => {
            let f = results_format(essence)
                .filter(|f| matches!(f, QueryResultsFormat::Xml | QueryResultsFormat::Json))
                .ok_or_else(|| {
                    format!("Content-Type {essence:?} is not SPARQL XML or JSON results")
                })?;
            match parse_results(f, body)? {
                ParsedResults::Boolean(b) => match boolean {
                    Some(expected) if expected != b => {
                        Err(format!("expected boolean {expected}, got {b}"))
                    }
                    _ => Ok(()),
                },
                ParsedResults::Solutions => Err("expected a boolean, got solutions".into()),
            }
        }
        "tabular" => {
            let f = results_format(essence).ok_or_else(|| {
                format!("Content-Type {essence:?} is not SPARQL XML, JSON, CSV or TSV results")
            })?;
            if f == QueryResultsFormat::Csv {
                // CSV results cannot be parsed back (lossy); the header line names the variables.
                let text = std::str::from_utf8(body).map_err(|e| format!("CSV: {e}"))?;
                return match text.lines().next() {
                    Some(h) if !h.trim().is_empty() => Ok(()),
                    _ => Err("CSV results without a header line".into()),
                };
            }
            match parse_results(f, body)? {
                ParsedResults::Solutions => Ok(()),
                ParsedResults::Boolean(_) => Err("expected solutions, got a boolean".into()),
            }
        }
        "RDF" => {
            let f = match essence {
                "application/rdf+xml" => RdfFormat::RdfXml,
                "text/turtle" => RdfFormat::Turtle,
                "application/n-triples" => RdfFormat::NTriples,
                "text/html" | "application/xhtml+xml" => {
                    return Err("RDFa cannot be checked by this harness".into())
                }
                other => {
                    return Err(format!(
                        "Content-Type {other:?} is not RDF/XML, Turtle, N-Triples or RDFa"
                    ))
                }
            };
            parse_graph(f, body, url).map(|_| ())
        }
        other => Err(format!("harness: unknown mf:expectedFormat {other:?}")),
    }
}

fn check_graph(
    expect: &Expect,
    expected_body: &str,
    essence: &str,
    body: &[u8],
    url: &str,
) -> Result<(), String> {
    let expected_type = expect
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("text/turtle");
    let expected_format = RdfFormat::from_media_type(expected_type)
        .ok_or_else(|| format!("harness: no RDF syntax for expected {expected_type:?}"))?;
    let mut expected = parse_graph(expected_format, expected_body.as_bytes(), url)
        .map_err(|e| format!("harness: expected body does not parse: {e}"))?;
    let actual_format = RdfFormat::from_media_type(essence)
        .ok_or_else(|| format!("Content-Type {essence:?} is not an RDF syntax"))?;
    let mut actual =
        parse_graph(actual_format, body, url).map_err(|e| format!("does not parse: {e}"))?;
    expected.canonicalize(CanonicalizationAlgorithm::Unstable);
    actual.canonicalize(CanonicalizationAlgorithm::Unstable);
    if expected == actual {
        return Ok(());
    }
    let (e, a) = (graph_lines(&expected), graph_lines(&actual));
    let only_e: Vec<&String> = e.iter().filter(|l| !a.contains(l)).collect();
    let only_a: Vec<&String> = a.iter().filter(|l| !e.contains(l)).collect();
    let mut out = format!(
        "graph not isomorphic to the expected one ({} expected triples, {} actual)",
        e.len(),
        a.len()
    );
    for l in only_e.iter().take(12) {
        out.push_str(&format!("\n  - {l}"));
    }
    for l in only_a.iter().take(12) {
        out.push_str(&format!("\n  + {l}"));
    }
    if only_e.is_empty() && only_a.is_empty() {
        out.push_str(
            "\n  (same triples up to blank node labels; the blank node structure differs)",
        );
    }
    Err(out)
}

// ---------------------------------------------------------------------------------------------------
// Running tests

/// The server path for a manifest path.
fn map_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/sparql/") {
        format!("/sparql{rest}")
    } else if let Some(rest) = path.strip_prefix("/gsp") {
        format!("/store{rest}")
    } else {
        path.to_owned()
    }
}

/// Replaces every bound template variable; fails on a `$NAME$` that is not bound.
fn substitute(text: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = text.to_owned();
    for (var, value) in vars {
        out = out.replace(var.as_str(), value);
    }
    if out.contains("$LOCATION$") {
        return Err("$LOCATION$ is not bound (no earlier Location header)".into());
    }
    Ok(out)
}

fn encode(chars: &str, encoding: &str) -> Result<Vec<u8>, String> {
    match encoding.to_ascii_uppercase().replace('_', "-").as_str() {
        "UTF-8" | "UTF8" => Ok(chars.as_bytes().to_vec()),
        // What Java's "UTF-16" produces: big-endian with a byte order mark.
        "UTF-16" | "UTF-16BE" => {
            let mut out = vec![0xFE, 0xFF];
            out.extend(chars.encode_utf16().flat_map(u16::to_be_bytes));
            Ok(out)
        }
        other => Err(format!(
            "harness: unsupported cnt:characterEncoding {other}"
        )),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        .proxy(None)
        .accept(ureq::config::AutoHeaderValue::None)
        .allow_non_standard_methods(true)
        .build()
        .into()
}

/// Sends one request as described (path already mapped and substituted).
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    host: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<Response, String> {
    let mut builder = http::Request::builder().method(method).uri(url);
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    // A POST / PUT without `ht:body` is sent with `Content-Length: 0` (ureq would otherwise announce a
    // chunked body).
    let body = body.or_else(|| {
        matches!(
            method.to_ascii_uppercase().as_str(),
            "POST" | "PUT" | "PATCH"
        )
        .then(Vec::new)
    });
    let result = match body {
        Some(bytes) => agent.run(builder.body(bytes).map_err(|e| format!("harness: {e}"))?),
        None => agent.run(builder.body(()).map_err(|e| format!("harness: {e}"))?),
    };
    let mut resp = result.map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = if method.eq_ignore_ascii_case("HEAD") {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| format!("reading the response body failed: {e}"))?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn run_requests(test: &TestCase, addr: std::net::SocketAddr) -> Result<(), String> {
    let agent = agent();
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut failures = Vec::new();
    let n = test.requests.len();
    for (i, req) in test.requests.iter().enumerate() {
        let at = format!("request {} of {n}", i + 1);
        let path = match substitute(&req.path, &vars) {
            Ok(p) => map_path(&p),
            Err(e) => {
                failures.push(format!("{at}: {} {}: {e}", req.method, req.path));
                break;
            }
        };
        let body = match &req.body {
            Some((chars, encoding)) => {
                match substitute(chars, &vars).and_then(|c| encode(&c, encoding)) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        failures.push(format!("{at}: {} {path}: body: {e}", req.method));
                        break;
                    }
                }
            }
            None => None,
        };
        let url = format!("http://{addr}{path}");
        let sent = format!(
            "{} {path}{}{}",
            req.method,
            req.headers
                .iter()
                .map(|(n, v)| format!(" [{n}: {v}]"))
                .collect::<String>(),
            req.body
                .as_ref()
                .map(|(c, enc)| format!(" body ({enc}): {:?}", truncate(c.clone())))
                .unwrap_or_default()
        );
        let resp = match send(
            &agent,
            &req.method,
            &url,
            &req.headers,
            test.authority.as_deref(),
            body,
        ) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{at}: {sent}\n  {e}"));
                break;
            }
        };
        let problems = check(&req.expect, &resp, &url);
        if !problems.is_empty() {
            failures.push(format!(
                "{at}: {sent}\n  {}\n  {}",
                problems.join("\n  "),
                resp.describe()
            ));
        }
        if let Some(var) = &req.expect.location {
            match resp.header("location") {
                Some(location) => {
                    vars.insert(var.clone(), location.to_owned());
                }
                None => break,
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

fn run_test(test: &TestCase) -> Outcome {
    if matches!(
        test.approval.as_str(),
        "Withdrawn" | "Rejected" | "Obsoleted" | "NotApproved"
    ) {
        return Outcome::Skip(format!("dawgt:approval {}", test.approval));
    }
    if !DIRECT_GRAPH_IDENTIFICATION
        && test
            .requires
            .iter()
            .any(|r| r.as_str() == format!("{MF}DirectGraphIdentification"))
    {
        return Outcome::Skip(
            "mf:DirectGraphIdentification: the server identifies graphs only by ?graph= / ?default"
                .into(),
        );
    }
    if test.requests.is_empty() {
        return Outcome::Fail("harness: no ht:requests".into());
    }
    let mut graphs = Vec::new();
    for (name, file) in &test.graph_data {
        match local_path(file) {
            Some(path) => graphs.push((name.clone(), file.clone(), path)),
            None => return Outcome::Fail(format!("harness: {file} is not a test-suite file")),
        }
    }
    let running = match server::Running::start(&graphs) {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(format!("server did not start: {e}")),
    };
    let result = run_requests(test, running.addr());
    running.stop();
    match result {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

fn main() {
    common::install_panic_hook();
    let filters = common::filters();

    let mut groups = Vec::new();
    let (mut seen_manifests, mut seen_tests) = (HashSet::new(), HashSet::new());
    for m in MANIFESTS {
        let walked = common::walk_manifests(m, &mut seen_manifests, &mut |iri, mf, entries| {
            groups.push(manifest_group(iri, mf, entries, &mut seen_tests)?);
            Ok(())
        });
        if let Err(e) = walked {
            println!("FAILED reading manifest {m}: {e}");
            std::process::exit(1);
        }
    }

    let mut tally = common::Tally::new(SKIP);
    for group in &groups {
        let tests: Vec<&TestCase> = group
            .tests
            .iter()
            .filter(|t| filters.is_empty() || filters.iter().any(|f| t.iri.contains(f.as_str())))
            .collect();
        if tests.is_empty() {
            continue;
        }
        for test in tests {
            let outcome = common::run_caught(|| run_test(test));
            let title = format!("{} ({}, {})", test.iri, test.name, test.kind);
            tally.record(&test.iri, &title, outcome);
        }
        tally.end_group(&group.name);
    }
    tally.print_failures(&seen_tests, !filters.is_empty());
    tally.finish()
}

// ---------------------------------------------------------------------------------------------------
// Server adapter: everything above is server-independent; this module is the only part that talks to tern.

mod server {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::Arc;

    use oxrdf::NamedNode;
    use tern::loaders::{self, Input, LoadOptions};
    use tern::server::{ServerConfig, ServerHandle};
    use tern::Store;

    /// A server over a fresh store in its own temporary directory.
    pub struct Running {
        handle: Option<ServerHandle>,
        addr: SocketAddr,
        // Declared before the directory so the store is closed before the directory is removed.
        store: Option<Arc<Store>>,
        _dir: tempfile::TempDir,
    }

    impl Running {
        /// Loads each (graph IRI, file IRI, file) into its graph, then starts serving on 127.0.0.1:0.
        pub fn start(graphs: &[(String, String, PathBuf)]) -> Result<Running, String> {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = Store::open(dir.path()).map_err(|e| e.to_string())?;
            for (name, file, path) in graphs {
                let options = LoadOptions {
                    base_iri: Some(file.clone()),
                    graph: Some(NamedNode::new(name.as_str()).map_err(|e| e.to_string())?),
                    ..LoadOptions::default()
                };
                loaders::load(&store, &[Input::Path(path.clone())], &options, &mut |_| {})
                    .map_err(|e| format!("loading {file}: {e}"))?;
            }
            let store = Arc::new(store);
            let config = ServerConfig {
                bind: "127.0.0.1:0".parse().expect("a socket address"),
                ..ServerConfig::default()
            };
            let handle =
                ServerHandle::start(Arc::clone(&store), config).map_err(|e| e.to_string())?;
            Ok(Running {
                addr: handle.addr(),
                handle: Some(handle),
                store: Some(store),
                _dir: dir,
            })
        }

        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        /// Graceful shutdown, then the store is closed.
        pub fn stop(mut self) {
            if let Some(handle) = self.handle.take() {
                handle.shutdown();
            }
            self.store.take();
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(handle) = self.handle.take() {
                handle.shutdown();
            }
        }
    }
}
