//! The `tern` command line: parses arguments, dispatches, reports.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use oxrdf::{BlankNode, NamedNode, NamedOrBlankNode};
use tern::loaders::{self, Format, GraphChoice, Input, LoadOptions};
use tern::Store;

/// Query evaluation and loading allocate many small short-lived buffers; mimalloc's thread-local free
/// lists cut the cost of each (measured: LUBM q14 and bulk loads, see README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "An embedded RDF store with a SPARQL server and graph-driven generation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load RDF files into a store (one transaction: all or nothing).
    Load {
        /// Store directory (created if missing).
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// Files to load (`-` for standard input); `.gz` and `.zst` are decompressed.
        #[arg(required = true)]
        files: Vec<String>,
        /// Graph IRI receiving the default-graph statements.
        #[arg(long)]
        graph: Option<String>,
        /// Syntax, when it cannot be told from the file name.
        #[arg(long)]
        format: Option<String>,
        /// Base IRI for relative IRIs (default: each file's file:// IRI).
        #[arg(long)]
        base: Option<String>,
        /// Skip bad statements, load the rest, report the first errors.
        #[arg(long)]
        lenient: bool,
        /// Use the bulk loader even if the store is not empty (it is the default for an empty store).
        #[arg(long, conflicts_with = "transactional")]
        bulk: bool,
        /// Load as one ordinary transaction even into an empty store.
        #[arg(long)]
        transactional: bool,
        /// Bulk loader memory budget for buffered quads, e.g. 512M or 2G (the dictionary comes on top).
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        max_memory: usize,
        /// Bulk loader parser workers (default: available cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Render a generator folder (SPARQL-fed templates) into an output directory; see README, Generation.
    Generate {
        /// Store directory.
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// The generator folder (one template per file, YAML frontmatter).
        generator: PathBuf,
        /// Output root; no output may leave it.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Print the plan and a unified diff; write nothing.
        #[arg(long, conflicts_with = "check")]
        dry_run: bool,
        /// Overwrite files edited by hand since the last run.
        #[arg(long)]
        force: bool,
        /// Report drift against the last receipt and exit non-zero if any; write nothing.
        #[arg(long)]
        check: bool,
    },
    /// Reproducible benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        which: tern::bench::Bench,
    },
    /// Write the store (or one graph) in an RDF syntax.
    Dump {
        /// Store directory.
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// Output syntax (default: from the output file name, else nquads).
        #[arg(long)]
        format: Option<String>,
        /// Graph to dump: an IRI, `default`, or omitted for all.
        #[arg(long)]
        graph: Option<String>,
        /// Output file (default: standard output).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Print counts, top predicates, bitmap and disk sizes.
    Stats {
        /// Store directory.
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// Predicates to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Also check every index, bitmap and counter (reads the whole store).
        #[arg(long)]
        verify: bool,
    },
    /// Serve the store over HTTP: SPARQL Protocol, Graph Store Protocol, query page, metrics.
    Serve {
        /// Store directory (created if missing).
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// Address to listen on (loopback by default; use 0.0.0.0:PORT to expose it).
        #[arg(long, default_value = "127.0.0.1:7878")]
        bind: std::net::SocketAddr,
        /// Token that updates and Graph Store writes must present as `Authorization: Bearer <token>`
        /// (also read from TERN_WRITE_TOKEN).
        #[arg(long, env = "TERN_WRITE_TOKEN")]
        write_token: Option<String>,
        /// Serve queries only; every write gets 403.
        #[arg(long)]
        read_only: bool,
        /// Query and update timeout in seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// Queries evaluated at once (default: twice the cores); more wait up to --queue-wait seconds,
        /// then get 503 with Retry-After.
        #[arg(long)]
        max_concurrent: Option<usize>,
        /// Seconds a query may wait for an evaluation slot.
        #[arg(long, default_value_t = 2.0)]
        queue_wait: f64,
        /// Per-client rate limit in requests per second (token bucket, burst = 2x); off by default.
        #[arg(long)]
        rate_limit: Option<f64>,
        /// Largest request body, e.g. 256M or 4G.
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        body_limit: usize,
        /// Allow CORS from this origin (repeatable); CORS is off without it.
        #[arg(long = "cors")]
        cors: Vec<String>,
        /// Directory `LOAD <file:...>` may read from (repeatable); LOAD of files is refused without it.
        #[arg(long = "load-allow")]
        load_allow: Vec<PathBuf>,
        /// Seconds to let in-flight requests finish after SIGTERM / Ctrl-C.
        #[arg(long, default_value_t = 10.0)]
        grace: f64,
        /// Query result cache budget, e.g. 256M (in memory, also persisted in the store); 0 disables it.
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        cache_bytes: usize,
        /// Hooks config (YAML, see README "Hooks and webhooks"): commit hooks, webhooks and the
        /// `POST /hooks/generate/{name}` trigger.
        #[arg(long)]
        hooks: Option<PathBuf>,
    },
    /// Webhook outbox maintenance (with the server stopped; `tern serve --hooks` delivers).
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Run a SPARQL query.
    Query {
        /// Store directory.
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// Query text.
        #[arg(
            short = 'q',
            long = "query",
            conflicts_with = "file",
            required_unless_present = "file"
        )]
        query: Option<String>,
        /// File holding the query.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Result format: table (default on a terminal), json, xml, csv, tsv; for CONSTRUCT/DESCRIBE an
        /// RDF syntax (turtle, ntriples, nquads, trig, rdfxml, jsonld).
        #[arg(long)]
        format: Option<String>,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Print the physical plan with estimated and actual rows and time per operator instead of results.
        #[arg(long)]
        explain: bool,
    },
    /// Run a SPARQL update (one atomic transaction).
    Update {
        /// Store directory (created if missing).
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// Update text.
        #[arg(
            short = 'u',
            long = "update",
            conflicts_with = "file",
            required_unless_present = "file"
        )]
        update: Option<String>,
        /// File holding the update.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Give up (writing nothing) after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Convert an RDF file to another syntax without a store.
    Convert {
        /// Input file (`-` for standard input).
        input: String,
        /// Output file (`-` for standard output).
        output: String,
        /// Input syntax (default: from the input name).
        #[arg(long)]
        from: Option<String>,
        /// Output syntax (default: from the output name).
        #[arg(long)]
        to: Option<String>,
        /// Base IRI for relative IRIs.
        #[arg(long)]
        base: Option<String>,
    },
}

/// `tern hooks` subcommands.
#[derive(Subcommand)]
enum HooksAction {
    /// Put a webhook message (delivered, failed or pending) back in the outbox, due now.
    Redeliver {
        /// Store directory.
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// The message's webhook-id.
        id: String,
    },
    /// List the messages waiting in the outbox and their attempts.
    Pending {
        /// Store directory.
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
    },
    /// Re-enable an endpoint disabled after repeated HTTP 410 answers.
    Enable {
        /// Store directory.
        #[arg(short = 'l', long = "location")]
        location: PathBuf,
        /// The endpoint URL.
        url: String,
    },
}

fn main() {
    let cli = Cli::parse();
    // The server logs each request (with its id) by default; other commands only warn unless RUST_LOG says.
    let default_filter = match cli.command {
        Command::Serve { .. } => "warn,tern_server=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
    if let Err(e) = run(cli) {
        // A closed pipe (`tern dump ... | head`) is the reader's choice, not an error.
        if e.chain().any(|c| {
            c.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Load {
            location,
            files,
            graph,
            format,
            base,
            lenient,
            bulk,
            transactional,
            max_memory,
            threads,
        } => {
            let options = LoadOptions {
                format: format.as_deref().map(parse_format).transpose()?,
                base_iri: base,
                graph: graph.map(|g| parse_iri(&g)).transpose()?,
                lenient,
            };
            let mode = if bulk {
                Mode::Bulk
            } else if transactional {
                Mode::Transactional
            } else {
                Mode::Auto
            };
            load(&location, &files, &options, mode, max_memory, threads)
        }
        Command::Bench { which } => tern::bench::run(which),
        Command::Generate {
            location,
            generator,
            out,
            dry_run,
            force,
            check,
        } => generate(&location, &generator, &out, dry_run, force, check),
        Command::Hooks { action } => hooks(action),
        Command::Serve {
            location,
            bind,
            write_token,
            read_only,
            timeout,
            max_concurrent,
            queue_wait,
            rate_limit,
            body_limit,
            cors,
            load_allow,
            grace,
            cache_bytes,
            hooks,
        } => {
            let store = if read_only {
                Store::open_read_only(&location)?
            } else {
                Store::open(&location)?
            };
            let quads = store.reader().len()?;
            let mut config = tern::server::ServerConfig {
                bind,
                write_token,
                read_only,
                query_timeout: Duration::from_secs_f64(timeout),
                max_concurrent_queries: max_concurrent
                    .unwrap_or(tern::server::ServerConfig::default().max_concurrent_queries),
                queue_wait: Duration::from_secs_f64(queue_wait),
                rate_limit: rate_limit.map(|r| (r, (2.0 * r).max(1.0))),
                body_limit,
                cors_origins: cors,
                load_allow,
                shutdown_grace: Duration::from_secs_f64(grace),
                cache_bytes,
                ..Default::default()
            };
            let hooks = hooks
                .map(|path| tern::generate::hooks::HooksConfig::load(&path))
                .transpose()?;
            if let Some(t) = hooks.as_ref().and_then(|h| h.trigger.clone()) {
                config.trigger_secret = Some(t.secret);
                config.generators = t
                    .generators
                    .into_iter()
                    .map(|(name, r)| (name, r.generator, r.out))
                    .collect();
            }
            // The engine lives as long as the server; dropping it at the end stops hooks and delivery.
            let _engine = match hooks {
                Some(h) => Some(tern::generate::hooks::HookEngine::start(&store, h)?),
                None => None,
            };
            let server =
                tern::server::ServerHandle::start_with_signals(std::sync::Arc::new(store), config)?;
            eprintln!(
                "serving {} ({quads} quads) on http://{} — query page at /, SPARQL at /sparql, \
                 Graph Store at /store; Ctrl-C stops",
                location.display(),
                server.addr()
            );
            server.join()?;
            eprintln!("stopped");
            Ok(())
        }
        Command::Query {
            location,
            query,
            file,
            format,
            timeout,
            explain,
        } => {
            let text = text_arg(query, file)?;
            let store = Store::open_read_only(&location)?;
            let options = tern::query::QueryOptions {
                timeout: timeout.map(Duration::from_secs_f64),
                ..Default::default()
            };
            if explain {
                print!("{}", tern::query::explain(&store, &text, options)?);
                return Ok(());
            }
            let results = tern::query::query(&store, &text, options)?;
            write_results(results, format.as_deref())
        }
        Command::Update {
            location,
            update,
            file,
            timeout,
        } => {
            let text = text_arg(update, file)?;
            let store = Store::open(&location)?;
            let before = store.reader().len()?;
            let start = std::time::Instant::now();
            let options = tern::query::UpdateOptions {
                timeout: timeout.map(Duration::from_secs_f64),
                allow_http_load: true,
                ..Default::default()
            };
            tern::query::update(&store, &text, options)?;
            let after = store.reader().len()?;
            eprintln!(
                "update applied in {:.3} s: {before} -> {after} quads",
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Dump {
            location,
            format,
            graph,
            output,
        } => {
            let store = Store::open_read_only(&location)?;
            let format = match format {
                Some(f) => parse_format(&f)?,
                None => output
                    .as_deref()
                    .and_then(|p| Format::from_path(p).0)
                    .unwrap_or(Format::NQuads),
            };
            let choice = match graph.as_deref() {
                None => GraphChoice::All,
                Some("default") => GraphChoice::Default,
                Some(g) => GraphChoice::Named(parse_graph(g)?),
            };
            let reader = store.reader();
            let n = match &output {
                Some(path) => {
                    let file = File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    loaders::dump(&reader, format, &choice, BufWriter::new(file))?
                }
                None => loaders::dump(
                    &reader,
                    format,
                    &choice,
                    BufWriter::new(io::stdout().lock()),
                )?,
            };
            eprintln!("dumped {n} quads as {format}");
            Ok(())
        }
        Command::Stats {
            location,
            top,
            verify,
        } => stats(&location, top, verify),
        Command::Convert {
            input,
            output,
            from,
            to,
            base,
        } => {
            let input = Input::from_arg(&input);
            let to = match to {
                Some(t) => parse_format(&t)?,
                None => Format::from_path(output.as_ref()).0.with_context(|| {
                    format!("cannot tell the output format of {output}: name it with --to")
                })?,
            };
            let options = LoadOptions {
                format: from.as_deref().map(parse_format).transpose()?,
                base_iri: base,
                ..LoadOptions::default()
            };
            let n = if output == "-" {
                loaders::convert(&input, &options, to, BufWriter::new(io::stdout().lock()))?
            } else {
                let file =
                    File::create(&output).with_context(|| format!("cannot create {output}"))?;
                loaders::convert(&input, &options, to, BufWriter::new(file))?
            };
            eprintln!("converted {n} statements to {to}");
            Ok(())
        }
    }
}

#[derive(PartialEq)]
enum Mode {
    Auto,
    Bulk,
    Transactional,
}

fn load(
    location: &PathBuf,
    files: &[String],
    options: &LoadOptions,
    mode: Mode,
    max_memory: usize,
    threads: Option<usize>,
) -> Result<()> {
    let inputs: Vec<Input> = files.iter().map(|f| Input::from_arg(f)).collect();
    // A new store is created while the input is parsed (see `bulk_load_new`); RocksDB's `CURRENT` file
    // marks an existing one.
    let new_store = mode != Mode::Transactional && !location.join("CURRENT").exists();
    let store = if new_store {
        None
    } else {
        Some(Store::open(location)?)
    };
    let bulk = match &store {
        None => true,
        Some(store) => mode == Mode::Bulk || (mode == Mode::Auto && store.reader().is_empty()?),
    };
    let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let started = std::time::Instant::now();
    let mut on_progress = |p: &loaders::Progress| {
        if let Some(total) = p.total_bytes {
            bar.set_length(total);
        }
        bar.set_position(p.bytes);
        let rate = p.quads as f64 / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{} triples, {:.0} triples/s", p.quads, rate));
    };
    let mut bulk_options = loaders::BulkLoadOptions {
        load: options.clone(),
        max_memory,
        ..Default::default()
    };
    if let Some(t) = threads {
        bulk_options.threads = t.max(1);
    }
    let report = match &store {
        None => loaders::bulk_load_new(location, &inputs, &bulk_options, &mut on_progress)
            .map(|(_, report)| report),
        Some(store) if bulk => loaders::bulk_load(store, &inputs, &bulk_options, &mut on_progress),
        Some(store) => loaders::load(store, &inputs, options, &mut on_progress),
    };
    bar.finish_and_clear();
    let report = report?;
    for e in &report.errors {
        eprintln!("skipped: {e}");
    }
    if report.skipped > 0 {
        eprintln!(
            "skipped {} bad statements (first {} shown)",
            report.skipped,
            report.errors.len()
        );
    }
    let rss = tern::peak_rss_bytes().map_or("?".to_owned(), |b| format!("{} MiB", b >> 20));
    println!(
        "loaded {} triples ({} new) in {:.2} s: {:.0} triples/s, peak RSS {rss} ({})",
        report.parsed,
        report.inserted,
        report.seconds,
        report.parsed as f64 / report.seconds.max(1e-9),
        if bulk { "bulk" } else { "transactional" }
    );
    if !report.phases.is_empty() {
        let phases: Vec<String> = report
            .phases
            .iter()
            .map(|(n, s)| format!("{n} {s:.2}s"))
            .collect();
        tracing::info!(
            spilled_runs = report.spilled_runs,
            "bulk phases: {}",
            phases.join(", ")
        );
    }
    Ok(())
}

fn stats(location: &PathBuf, top: usize, verify: bool) -> Result<()> {
    let store = Store::open_read_only(location)?;
    let reader = store.reader();
    let s = reader.statistics()?;
    let bytes = store.size_on_disk()?;
    let bitmaps = reader.bitmap_stats()?;
    let mut out = io::stdout().lock();
    writeln!(out, "store          {}", location.display())?;
    writeln!(out, "format version {}", tern::store::FORMAT_VERSION)?;
    writeln!(out, "data version   {}", store.data_version())?;
    writeln!(out, "quads          {}", s.quads)?;
    writeln!(out, "named graphs   {}", s.named_graphs)?;
    writeln!(out, "terms          {}", s.terms)?;
    let (cache_entries, cache_bytes) = tern::query::cache::persisted(&store)?;
    writeln!(
        out,
        "query cache    {cache_entries} persisted results (L3), {cache_bytes} bytes"
    )?;
    let per_million = if s.quads > 0 {
        bytes as f64 / s.quads as f64
    } else {
        0.0
    };
    writeln!(
        out,
        "bytes on disk  {bytes} ({:.1} MiB per million quads)",
        per_million * 1e6 / 1048576.0
    )?;
    writeln!(
        out,
        "bitmaps        {} predicate, {} predicate-object, {} graph; {} bytes",
        bitmaps.predicate, bitmaps.predicate_object, bitmaps.graph, bitmaps.bytes
    )?;
    let mut preds = reader.all_predicate_stats()?;
    preds.sort_by_key(|p| std::cmp::Reverse(p.quads));
    writeln!(
        out,
        "top predicates (quads, distinct subjects, distinct objects, graph):"
    )?;
    for p in preds.iter().take(top) {
        let graph = if p.graph == tern::TermId::DEFAULT_GRAPH {
            "default".to_owned()
        } else {
            reader.term(p.graph)?.to_string()
        };
        writeln!(
            out,
            "  {:>10} {:>10} {:>10}  {}  [{graph}]",
            p.quads,
            p.distinct_subjects,
            p.distinct_objects,
            reader.term(p.predicate)?
        )?;
    }
    if verify {
        match store.verify()? {
            Ok(r) => writeln!(
                out,
                "verify         ok: {} quads, {} bitmaps, {} terms",
                r.quads, r.bitmaps, r.terms
            )?,
            Err(e) => bail!("{e}"),
        }
    }
    Ok(())
}

fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: use e.g. 512M or 2G"))?;
    let mult = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("invalid size unit in {text:?}: use K, M or G")),
    };
    Ok(n * mult)
}

fn parse_format(name: &str) -> Result<Format> {
    Format::from_name(name)
        .ok_or_else(|| loaders::LoadError::UnknownFormatName(name.to_owned()).into())
}

fn parse_iri(iri: &str) -> Result<NamedNode> {
    NamedNode::new(iri).map_err(|e| {
        loaders::LoadError::InvalidIri {
            iri: iri.to_owned(),
            message: e.to_string(),
        }
        .into()
    })
}

fn parse_graph(g: &str) -> Result<NamedOrBlankNode> {
    if let Some(label) = g.strip_prefix("_:") {
        return Ok(BlankNode::new(label)
            .with_context(|| format!("invalid blank node {g}"))?
            .into());
    }
    Ok(parse_iri(g)?.into())
}

/// The text of a query or update given inline or as a file.
fn text_arg(inline: Option<String>, file: Option<PathBuf>) -> Result<String> {
    match (inline, file) {
        (Some(t), _) => Ok(t),
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))
        }
        (None, None) => bail!("give the text with -q/-u or a file with --file"),
    }
}

/// Writes query results to standard output in the requested format.
fn write_results(results: tern::query::QueryResults, format: Option<&str>) -> Result<()> {
    use tern::query::{QueryResults, ResultFormat};
    let out = BufWriter::new(io::stdout().lock());
    let result_format = |f: &str| -> Result<Option<ResultFormat>> {
        match (f, ResultFormat::from_name(f)) {
            ("table", _) => Ok(None),
            (_, Some(format)) => Ok(Some(format)),
            (other, None) => {
                bail!("unknown result format {other:?}: use table, json, xml, csv or tsv")
            }
        }
    };
    match results {
        QueryResults::Graph(_) => {
            let format = parse_format(format.unwrap_or("turtle"))?;
            results.write_graph(out, format.to_oxrdfio())?;
        }
        QueryResults::Boolean(b) => match result_format(format.unwrap_or("table"))? {
            None => println!("{b}"),
            Some(f) => results.write(out, f)?,
        },
        QueryResults::Solutions(solutions) => match result_format(format.unwrap_or("table"))? {
            Some(f) => QueryResults::Solutions(solutions).write(out, f)?,
            None => write_table(solutions, out)?,
        },
    }
    Ok(())
}

/// An aligned text table; columns are sized on the first 1000 rows so output starts without reading all.
fn write_table(solutions: tern::query::Solutions, mut out: impl Write) -> Result<()> {
    let vars: Vec<String> = solutions
        .variables()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let mut widths: Vec<usize> = vars.iter().map(|v| v.chars().count()).collect();
    let mut head = Vec::new();
    let mut rest = solutions.peekable();
    let mut rows = 0u64;
    let cells = |s: &tern::query::QuerySolution| -> Vec<String> {
        s.values()
            .iter()
            .map(|v| v.as_ref().map_or_else(String::new, |t| t.to_string()))
            .collect()
    };
    while head.len() < 1000 {
        match rest.next() {
            Some(s) => {
                let c = cells(&s?);
                for (w, c) in widths.iter_mut().zip(&c) {
                    *w = (*w).max(c.chars().count());
                }
                head.push(c);
            }
            None => break,
        }
    }
    let line = |out: &mut dyn Write, c: &[String]| -> io::Result<()> {
        let padded: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "| {} |", padded.join(" | "))
    };
    line(&mut out, &vars)?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "|-{}-|", rule.join("-|-"))?;
    for c in &head {
        line(&mut out, c)?;
        rows += 1;
    }
    for s in rest {
        line(&mut out, &cells(&s?))?;
        rows += 1;
    }
    out.flush()?;
    eprintln!("{rows} rows");
    Ok(())
}

/// `tern generate`: one line per output that changes (or would), the diff on dry runs, then the summary.
fn generate(
    location: &std::path::Path,
    generator: &std::path::Path,
    out: &std::path::Path,
    dry_run: bool,
    force: bool,
    check: bool,
) -> Result<()> {
    use tern::generate::{Action, Generator, RunOptions};
    // Dry runs and checks write nothing to the store either, but the receipt lives there, so open it
    // read-write only when a run may record one.
    let store = if dry_run || check {
        Store::open_read_only(location)?
    } else {
        Store::open(location)?
    };
    let report = Generator::new(&store, generator)?.run(
        out,
        &RunOptions {
            dry_run,
            force,
            check,
        },
    )?;
    let mut stdout = io::stdout().lock();
    for o in &report.outputs {
        let line = match &o.action {
            Action::Created => format!("created   {}", o.path),
            Action::Updated => format!("updated   {}", o.path),
            Action::Unchanged => continue,
            Action::Skipped { reason } => format!("skipped   {} ({reason})", o.path),
            Action::Conflict { reason } => format!("CONFLICT  {} ({reason})", o.path),
        };
        writeln!(stdout, "{line}")?;
        if let Some(diff) = &o.diff {
            write!(stdout, "{diff}")?;
        }
    }
    for d in &report.drift {
        writeln!(stdout, "drift: {d}")?;
    }
    writeln!(
        stdout,
        "{}{}; {}",
        if dry_run {
            "dry run, nothing written: "
        } else {
            ""
        },
        report.summary(),
        report.cache_summary()
    )?;
    if check && !report.drift.is_empty() {
        bail!(
            "{} drift(s); run `tern generate` without --check to bring the outputs up to date",
            report.drift.len()
        );
    }
    if report.conflicts() > 0 && !force {
        bail!(
            "{} output(s) edited by hand were not overwritten; keep your edits in the template or rerun with --force",
            report.conflicts()
        );
    }
    Ok(())
}

/// `tern hooks ...`: outbox maintenance on a store not opened by a server.
fn hooks(action: HooksAction) -> Result<()> {
    use tern::generate::webhooks;
    match action {
        HooksAction::Redeliver { location, id } => {
            let store = Store::open(&location)?;
            if webhooks::redeliver(&store, &id)? {
                eprintln!("{id}: back in the outbox; `tern serve --hooks` delivers it");
                Ok(())
            } else {
                Err(anyhow::anyhow!("no webhook message with id {id}"))
            }
        }
        HooksAction::Pending { location } => {
            let store = Store::open(&location)?;
            for e in webhooks::pending(&store)? {
                println!("{}\t{}\t{} attempts", e.id, e.url, e.attempts);
            }
            Ok(())
        }
        HooksAction::Enable { location, url } => {
            let store = Store::open(&location)?;
            webhooks::enable_endpoint(&store, &url)?;
            eprintln!("{url}: enabled");
            Ok(())
        }
    }
}
