//! The query page at `/` end to end in headless Chromium, driven through chromedriver's W3C WebDriver HTTP
//! API: a SELECT over the bundled sample data (typed, run with the button; compact terms, row count, download
//! links that the server honours), an ASK, a CONSTRUCT, and a syntax error (run with Ctrl+Enter) whose
//! message carries a line:column position.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! test fails and says so.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver web element identifier key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(15);
/// WebDriver key codes: Control toggles a sticky modifier inside one Send Keys text.
const CTRL: char = '\u{E009}';
const ENTER: char = '\u{E007}';

#[test]
fn query_page_in_headless_chromium() {
    for binary in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: this test drives the query page in headless Chromium; \
             install it with `apt-get install chromium chromium-driver`"
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let store = tern::Store::open(dir.path().join("store")).expect("open store");
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample.ttl");
    tern::loaders::load(
        &store,
        &[tern::loaders::Input::Path(sample)],
        &tern::loaders::LoadOptions::default(),
        &mut |_| {},
    )
    .expect("load data/sample.ttl");
    let server = tern::server::ServerHandle::start(
        Arc::new(store),
        tern::server::ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
    )
    .expect("start server");
    let page = format!("http://{}/", server.addr());

    let driver = ChromeDriver::spawn(&dir.path().join("chromedriver.log"));
    let browser = driver.session(&dir.path().join("profile"));
    browser.navigate(&page);

    // The page loads with the default query in the editor.
    let editor = browser.find("#query");
    assert_eq!(
        browser.property(&editor, "value"),
        "SELECT * WHERE { ?s ?p ?o } LIMIT 10"
    );

    // SELECT, typed and run with the button: people and their names (and birth dates where known).
    let select = "PREFIX : <https://example.org/library/data/>\n\
                  PREFIX lib: <https://example.org/library#>\n\
                  SELECT ?person ?name ?born WHERE {\n\
                  ?person a lib:Person ; lib:name ?name . OPTIONAL { ?person lib:born ?born }\n\
                  } ORDER BY ?name";
    browser.type_query(select);
    browser.click(&browser.find("#run"));
    let rows = browser.wait_for("result rows", || {
        let rows = browser.find_all("#results tbody tr");
        (!rows.is_empty()).then_some(rows)
    });
    let header: Vec<String> = browser
        .find_all("#results thead th:not(.n)")
        .iter()
        .map(|th| browser.text(th))
        .collect();
    assert_eq!(header, ["?person", "?name", "?born"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            browser
                .find_all_in(row, "td:not(.n)")
                .iter()
                .map(|td| browser.text(td))
                .collect()
        })
        .collect();
    let expected = [
        [":codd", "\"Edgar F. Codd\"", "\"1923-08-19\"^^xsd:date"],
        [":hendler", "\"James Hendler\"", ""],
        [":lassila", "\"Ora Lassila\"", ""],
        [":abiteboul", "\"Serge Abiteboul\"", ""],
        [
            ":berners-lee",
            "\"Tim Berners-Lee\"",
            "\"1955-06-08\"^^xsd:date",
        ],
    ];
    assert_eq!(cells, expected, "result table");
    let status = browser.text(&browser.find("#status"));
    assert!(
        status.contains("5 rows") && status.contains("ms"),
        "status line: {status:?}"
    );
    assert_eq!(browser.text(&browser.find("#error")), "", "no error shown");

    // Download links: one per results format, GET /sparql?query=...&format=..., honoured by the server.
    let links = browser.find_all("#downloads a");
    let hrefs: Vec<String> = links.iter().map(|a| browser.property(a, "href")).collect();
    let formats: Vec<&str> = hrefs
        .iter()
        .map(|h| h.rsplit("&format=").next().unwrap_or(""))
        .collect();
    assert_eq!(formats, ["json", "xml", "csv", "tsv"], "download links");
    let csv_link = &hrefs[2];
    assert!(
        csv_link.starts_with(&format!("{page}sparql?query=")),
        "{csv_link}"
    );
    let (content_type, csv) = http_get(csv_link);
    assert!(
        content_type == "text/csv; charset=utf-8",
        "CSV download served as {content_type:?}"
    );
    assert!(
        csv.contains("Edgar F. Codd") && csv.lines().count() == 6,
        "CSV download:\n{csv}"
    );

    // ASK shows true/false.
    browser.type_query("ASK { ?p <https://example.org/library#name> \"Ora Lassila\" }");
    browser.click(&browser.find("#run"));
    let answer = browser.wait_for("ASK answer", || {
        Some(browser.text(&browser.find("#boolean"))).filter(|t| !t.is_empty())
    });
    assert_eq!(answer, "true");
    assert!(browser.find_all("#results tbody tr").is_empty());

    // CONSTRUCT shows the graph as Turtle, with graph download formats.
    browser.type_query(
        "CONSTRUCT { ?p <https://example.org/library#name> ?n } \
         WHERE { ?p <https://example.org/library#name> ?n } ",
    );
    browser.click(&browser.find("#run"));
    let graph = browser.wait_for("CONSTRUCT graph", || {
        Some(browser.text(&browser.find("#graph"))).filter(|t| !t.is_empty())
    });
    assert!(
        graph.contains("\"Serge Abiteboul\"") && graph.contains("\"Tim Berners-Lee\""),
        "graph:\n{graph}"
    );
    let links = browser.find_all("#downloads a");
    let labels: Vec<String> = links.iter().map(|a| browser.text(a)).collect();
    assert_eq!(labels, ["Turtle", "N-Triples"]);
    let ntriples_link = browser.property(&links[1], "href");
    assert!(
        ntriples_link.ends_with("&format=ntriples"),
        "{ntriples_link}"
    );
    let (content_type, ntriples) = http_get(&ntriples_link);
    assert!(
        content_type.starts_with("application/n-triples"),
        "N-Triples download served as {content_type:?}"
    );
    assert_eq!(
        ntriples.lines().count(),
        5,
        "N-Triples download:\n{ntriples}"
    );

    // A syntax error, run with Ctrl+Enter: the server's message with its line:column position.
    browser.type_query(&format!(
        "SELECT ?s WHERE {{\n  ?s ?p\n}}{CTRL}{ENTER}{CTRL}"
    ));
    let error = browser.wait_for("error message", || {
        Some(browser.text(&browser.find("#error"))).filter(|t| !t.is_empty())
    });
    assert!(error.contains("400"), "error: {error:?}");
    assert!(
        has_position(&error),
        "error message without line:column: {error:?}"
    );
    assert!(browser.find_all("#results tbody tr").is_empty());
    assert!(browser.find_all("#downloads a").is_empty());

    browser.close();
    drop(browser);
    drop(driver);
    server.shutdown();
}

/// `digits:digits` somewhere in the text.
fn has_position(text: &str) -> bool {
    let b = text.as_bytes();
    (1..b.len().saturating_sub(1))
        .any(|i| b[i] == b':' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// GET a URL: (Content-Type, body); panics unless 200.
fn http_get(url: &str) -> (String, String) {
    let mut response = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.body_mut().read_to_string().expect("read body");
    assert_eq!(status, 200, "GET {url}: {body}");
    (content_type, body)
}

/// A chromedriver process on a free port; killed on drop.
struct ChromeDriver {
    child: Child,
    base: String,
    log: PathBuf,
    agent: ureq::Agent,
}

impl ChromeDriver {
    fn spawn(log: &Path) -> ChromeDriver {
        let agent = agent();
        for _attempt in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
            let mut driver = ChromeDriver {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log: log.to_owned(),
                agent: agent.clone(),
            };
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = driver.child.try_wait() {
                    break; // exited: the port was taken in between; try another
                }
                let status = driver.call("GET", "/status", None);
                if status
                    .ok()
                    .and_then(|v| v.get("ready").and_then(Json::as_bool))
                    == Some(true)
                {
                    return driver;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("chromedriver did not become ready; log:\n{}", read_log(log));
    }

    /// One WebDriver command: the response's `value`, or the WebDriver error as text.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Json, String> {
        let url = format!("{}{}", self.base, path);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json; charset=utf-8")
                .send(body.unwrap_or("{}")),
        };
        let mut response = response.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let json = Json::parse(&text).map_err(|e| format!("{method} {path}: {e} in {text}"))?;
        let value = json.get("value").cloned().unwrap_or(Json::Null);
        if status == 200 {
            Ok(value)
        } else {
            let field = |k| value.get(k).and_then(Json::as_str).unwrap_or("").to_owned();
            Err(format!(
                "{method} {path}: HTTP {status}: {}: {}",
                field("error"),
                field("message")
            ))
        }
    }

    fn session(&self, profile: &Path) -> Browser<'_> {
        let args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ]
        .iter()
        .map(|a| json_str(a))
        .chain([json_str(&format!("--user-data-dir={}", profile.display()))])
        .collect();
        let capabilities = format!(
            r#"{{"capabilities":{{"alwaysMatch":{{"browserName":"chrome","goog:chromeOptions":{{"binary":{},"args":[{}]}}}}}}}}"#,
            json_str(CHROMIUM),
            args.join(",")
        );
        let value = self
            .call("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("{e}\nchromedriver log:\n{}", read_log(&self.log)));
        let id = value
            .get("sessionId")
            .and_then(Json::as_str)
            .unwrap_or_else(|| panic!("no sessionId in {value:?}"))
            .to_owned();
        Browser {
            driver: self,
            session: format!("/session/{id}"),
            open: std::cell::Cell::new(true),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(0);
    log[start..].to_owned()
}

/// A WebDriver session (one headless Chromium); deleted on drop, so a failing assertion closes the browser.
struct Browser<'a> {
    driver: &'a ChromeDriver,
    session: String,
    open: std::cell::Cell<bool>,
}

impl Browser<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<&str>) -> Json {
        self.driver
            .call(method, &format!("{}{}", self.session, path), body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn navigate(&self, url: &str) {
        self.cmd(
            "POST",
            "/url",
            Some(&format!(r#"{{"url":{}}}"#, json_str(url))),
        );
    }

    fn find(&self, css: &str) -> String {
        element_id(&self.cmd("POST", "/element", Some(&locator(css))))
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        elements(&self.cmd("POST", "/elements", Some(&locator(css))))
    }

    fn find_all_in(&self, element: &str, css: &str) -> Vec<String> {
        elements(&self.cmd(
            "POST",
            &format!("/element/{element}/elements"),
            Some(&locator(css)),
        ))
    }

    /// Visible text ("" for hidden elements).
    fn text(&self, element: &str) -> String {
        let value = self.cmd("GET", &format!("/element/{element}/text"), None);
        value.as_str().unwrap_or("").to_owned()
    }

    fn property(&self, element: &str, name: &str) -> String {
        let value = self.cmd("GET", &format!("/element/{element}/property/{name}"), None);
        value.as_str().unwrap_or("").to_owned()
    }

    fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), None);
    }

    /// Element Clear on the editor, then Element Send Keys with the text.
    fn type_query(&self, text: &str) {
        let editor = self.find("#query");
        self.cmd("POST", &format!("/element/{editor}/clear"), None);
        self.cmd(
            "POST",
            &format!("/element/{editor}/value"),
            Some(&format!(r#"{{"text":{}}}"#, json_str(text))),
        );
    }

    /// Polls `probe` until it yields a value; fails after 15 s, naming what it waited for and any error shown.
    fn wait_for<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = probe() {
                return found;
            }
            if Instant::now() > deadline {
                let status = self.text(&self.find("#status"));
                let error = self.text(&self.find("#error"));
                panic!("no {what} after {WAIT:?}; status {status:?}, error {error:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn close(&self) {
        if self.open.replace(false) {
            let _ = self.driver.call("DELETE", &self.session, None);
        }
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

fn locator(css: &str) -> String {
    format!(r#"{{"using":"css selector","value":{}}}"#, json_str(css))
}

fn element_id(value: &Json) -> String {
    value
        .get(ELEMENT)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("not an element reference: {value:?}"))
        .to_owned()
}

fn elements(value: &Json) -> Vec<String> {
    match value {
        Json::Arr(items) => items.iter().map(element_id).collect(),
        other => panic!("not a list of elements: {other:?}"),
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Just enough JSON for WebDriver responses.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let value = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(value)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: expected {what} at byte {}", self.i))
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        let hit = self.s.get(self.i) == Some(&b);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        let rest = &self.s[self.i..];
        for (word, value) in [
            ("null", Json::Null),
            ("true", Json::Bool(true)),
            ("false", Json::Bool(false)),
        ] {
            if rest.starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(value);
            }
        }
        match rest.first() {
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    if self.eat(b']') {
                        return Ok(Json::Arr(items));
                    }
                    if !self.eat(b',') {
                        return self.err("',' or ']'");
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                if self.eat(b'}') {
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return self.err("':'");
                    }
                    fields.push((key, self.value()?));
                    if self.eat(b'}') {
                        return Ok(Json::Obj(fields));
                    }
                    if !self.eat(b',') {
                        return self.err("',' or '}'");
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let number = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                number
                    .parse()
                    .map(Json::Num)
                    .or_else(|_| self.err("a number"))
            }
            _ => self.err("a value"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return self.err("a string");
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return self.err("a closing quote"),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).or_else(|_| self.err("UTF-8"));
                }
                Some(b'\\') => {
                    let escape = self.s.get(self.i + 1).copied();
                    self.i += 2;
                    let c = match escape {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let high = self.hex4()?;
                            if (0xD800..0xDC00).contains(&high)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let low = self.hex4()?;
                                let code = 0x10000
                                    + ((high - 0xD800) << 10)
                                    + (low.wrapping_sub(0xDC00) & 0x3FF);
                                char::from_u32(code).unwrap_or('\u{FFFD}')
                            } else {
                                char::from_u32(high).unwrap_or('\u{FFFD}')
                            }
                        }
                        _ => return self.err("an escape"),
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                Some(&b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match digits.and_then(|h| u32::from_str_radix(h, 16).ok()) {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => self.err("four hex digits"),
        }
    }
}
