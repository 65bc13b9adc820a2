//! The bulk loading pipeline: a reader thread cuts the input into chunks, a pool of parser workers parses
//! and dictionary-encodes them in parallel, and the calling thread feeds the id quads to the store's
//! [`tern_store::BulkLoad`], which sorts, spills and ingests SST files.
//!
//! - N-Triples / N-Quads are cut at line boundaries and parsed by [`ntriples::LineParser`] (falling back to
//!   `oxttl` per line outside its fast subset).
//! - Turtle / TriG are cut at statement boundaries by [`split::Splitter`], with directives carried along, and
//!   each chunk is parsed by `oxttl`. A chunk that fails is re-checked by a sequential parse of the whole
//!   input, so an error is always the reference parser's, with its true position.
//! - RDF/XML and JSON-LD are parsed on the reader thread; workers only encode.
//!
//! Blank node labels are scoped to one input: every label gets a per-input random prefix, which needs no
//! shared map and is the same in every chunk.

pub(crate) mod ntriples;
mod parsed;
mod rdfxml;
mod split;
mod turtle;
mod xmlsplit;

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use oxrdf::{BlankNode, GraphName, GraphNameRef, NamedOrBlankNode, Quad, QuadRef, Term};
use oxrdfio::RdfParseError;
use oxttl::{NQuadsParser, NTriplesParser, TriGParser, TurtleParser};
use tern_store::{BulkEncoder, BulkLoad, BulkOptions, DetachedBulkLoad, IdQuad, OpenError, Store};

use crate::error::{LoadError, SyntaxError};
use crate::format::{Compression, Format};
use crate::input::Input;
use crate::load::{
    base_iri, input_format, io_error, parse_error, read_quads, syntax_error, LoadOptions,
    LoadReport, Progress,
};
use ntriples::{Line, LineParser};

/// Bytes per chunk handed to a worker: a 64th of the input, within these bounds (see [`chunk_bytes`]).
const CHUNK_BYTES_MIN: usize = 1 << 20;
const CHUNK_BYTES_MAX: usize = 4 << 20;
/// Quads a worker encodes before it flushes to the shared dictionary.
const FLUSH_QUADS: usize = 32 * 1024;

/// Bulk load settings.
#[derive(Clone, Debug)]
pub struct BulkLoadOptions {
    /// Parsing options (format, base, graph, lenient).
    pub load: LoadOptions,
    /// Memory budget for buffered quads; beyond it sorted runs spill to disk.
    pub max_memory: usize,
    /// Parser workers (default: available cores).
    pub threads: usize,
}

impl Default for BulkLoadOptions {
    fn default() -> Self {
        BulkLoadOptions {
            load: LoadOptions::default(),
            max_memory: 1 << 30,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

enum Chunk {
    /// Whole lines of N-Triples / N-Quads, starting at line `first_line` (0-based; `None` for a mapped
    /// file, whose line numbers are counted only when an error needs one).
    Lines { text: Text, first_line: Option<u64> },
    /// Whole Turtle / TriG statements, to be parsed after `header` (the directives seen before).
    Statements { header: Arc<String>, text: Text },
    /// Whole top-level elements of an RDF/XML document, to be parsed between `header` (everything up to
    /// the `rdf:RDF` start tag) and `footer` (its end tag).
    Elements {
        header: Arc<(String, String)>,
        bytes: Vec<u8>,
    },
    /// Quads parsed on the reader thread.
    Quads(Vec<Quad>),
}

/// The text of a chunk: a buffer the reader filled, or a range of a plain file mapped into memory.
enum Text {
    /// `bytes[..len]`; the buffer goes back to the reader through the recycling channel.
    Read { bytes: Vec<u8>, len: usize },
    /// `map[start..end]`.
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        end: usize,
    },
}

impl Text {
    fn bytes(&self) -> &[u8] {
        match self {
            Text::Read { bytes, len } => &bytes[..*len],
            Text::Mapped { map, start, end } => &map[*start..*end],
        }
    }

    /// Lines before a mapped chunk, counted over the text before it (whose pages are then unmapped again:
    /// those of chunks still being parsed would only fault back in). Zero for a buffer.
    fn lines_before(&self) -> u64 {
        match self {
            Text::Read { .. } => 0,
            Text::Mapped { map, start, .. } => {
                let lines = memchr::memchr_iter(b'\n', &map[..*start]).count() as u64;
                release_mapped(map, 0, *start);
                lines
            }
        }
    }

    /// Hands a buffer back to the reader (freed when the pool is full), or unmaps a parsed range.
    fn release(self, recycle: &SyncSender<Vec<u8>>) {
        match self {
            Text::Read { bytes, .. } => {
                let _ = recycle.try_send(bytes);
            }
            Text::Mapped { map, start, end } => release_mapped(&map, start, end),
        }
    }
}

/// What a worker sends back.
#[derive(Default)]
struct Encoded {
    quads: Vec<IdQuad>,
    parsed: u64,
    skipped: u64,
    errors: Vec<SyntaxError>,
}

enum Message {
    Encoded(Encoded),
    Failed(LoadError),
    /// A parallel Turtle/TriG chunk failed. Only a hint (the split may be wrong): the caller re-checks the
    /// input sequentially, and that parser's error, with its true position, is the one reported.
    ChunkFailed,
}

struct Job<'a> {
    input: &'a Input,
    format: Format,
    compression: Compression,
    options: &'a LoadOptions,
    salt: String,
    stop: &'a AtomicBool,
    bytes: Arc<AtomicU64>,
    /// Emptied quad batches handed back by the collector: a fresh megabyte per flush cost page faults
    /// and kernel zeroing every time (up to a tenth of a Turtle load's CPU went to zeroing fresh pages).
    spare_quads: Mutex<Vec<Vec<IdQuad>>>,
    chunk_bytes: usize,
}

/// The chunk size for `input`. A chunk is parsed and encoded as one batch, and each batch resolves its
/// distinct terms in the shared dictionary, so larger chunks resolve fewer terms there (a term recurring
/// across chunks is looked up once per chunk). But the workers finish unevenly by up to a chunk, so a
/// small input gets small chunks. LUBM-10 (225 MB) gets 3.5 MB chunks: 64 flushes instead of 215.
fn chunk_bytes(input: &Input, compression: Compression) -> usize {
    let size = match compression {
        Compression::None => input.size(),
        // Compressed sizes say little about the text: the smallest chunks are always safe.
        _ => None,
    };
    size.and_then(|s| usize::try_from(s / 64).ok())
        .unwrap_or(CHUNK_BYTES_MIN)
        .clamp(CHUNK_BYTES_MIN, CHUNK_BYTES_MAX)
}

impl Job<'_> {
    /// An empty batch, reusing a spare quad buffer when there is one.
    fn batch(&self) -> Encoded {
        let quads = self
            .spare_quads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        Encoded {
            quads,
            ..Encoded::default()
        }
    }
}

/// Loads `inputs` with the bulk path. Atomic: on any error the store is left as it was.
pub fn bulk_load(
    store: &Store,
    inputs: &[Input],
    options: &BulkLoadOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<LoadReport, LoadError> {
    let session = Session::Open(store.bulk_loader(&bulk_options(options))?);
    match load_inputs(session, inputs, options, false, progress)? {
        Some(report) => Ok(report),
        None => retry_sequential(store, inputs, options, progress),
    }
}

/// [`bulk_load`] into a new store at `path`, created while the input is parsed (creating a store takes
/// ~25 ms, a sixteenth of a BSBM 1000 load). Returns the store. Fails with
/// [`tern_store::StoreError::NotNew`], loading nothing, if another process wrote to the store while it was
/// created; the caller decides whether a store exists there (RocksDB's `CURRENT` file).
pub fn bulk_load_new(
    path: &Path,
    inputs: &[Input],
    options: &BulkLoadOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Store, LoadReport), LoadError> {
    let dir = path.to_path_buf();
    let opening = Opening {
        handle: Mutex::new(Some(std::thread::spawn(move || Store::open(dir)))),
        store: OnceLock::new(),
    };
    let session = Session::Opening {
        detached: DetachedBulkLoad::new(),
        opening: &opening,
        options: bulk_options(options),
    };
    let outcome = load_inputs(session, inputs, options, false, progress);
    // Joined on every path: a store left opening would still hold its lock. The load's own error first.
    let opened = opening.store();
    let outcome = outcome?;
    let store = opened?;
    let report = match outcome {
        Some(report) => report,
        None => retry_sequential(store, inputs, options, progress)?,
    };
    Ok((store.clone(), report))
}

fn bulk_options(options: &BulkLoadOptions) -> BulkOptions {
    BulkOptions {
        max_memory: options.max_memory,
    }
}

/// The load again into `store`, parsing Turtle and TriG sequentially: a chunk failed although the input is
/// valid, so the split was wrong (nothing was committed).
fn retry_sequential(
    store: &Store,
    inputs: &[Input],
    options: &BulkLoadOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<LoadReport, LoadError> {
    let session = Session::Open(store.bulk_loader(&bulk_options(options))?);
    load_inputs(session, inputs, options, true, progress)?.ok_or_else(|| LoadError::Io {
        path: "<bulk load>".into(),
        source: std::io::Error::other("sequential bulk load asked for a retry"),
    })
}

/// A store being created on another thread.
struct Opening {
    handle: Mutex<Option<JoinHandle<Result<Store, OpenError>>>>,
    store: OnceLock<Store>,
}

impl Drop for Opening {
    /// Never leaves the store opening behind (it would hold its lock), even on a panic.
    fn drop(&mut self) {
        let handle = self.handle.get_mut().map_or(None, Option::take);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Opening {
    /// Whether the store is open (or failed to open): taking it over will not wait.
    fn ready(&self) -> bool {
        self.handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }

    /// The store, waiting for it.
    fn store(&self) -> Result<&Store, LoadError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        let opened = match handle.map(JoinHandle::join) {
            Some(Ok(opened)) => opened?,
            Some(Err(_)) => {
                return Err(LoadError::Io {
                    path: "<store>".into(),
                    source: std::io::Error::other("opening the store panicked"),
                })
            }
            None => {
                return Err(LoadError::Io {
                    path: "<store>".into(),
                    source: std::io::Error::other("the store failed to open earlier"),
                })
            }
        };
        Ok(self.store.get_or_init(|| opened))
    }
}

/// Where a bulk load's quads go: a store's [`BulkLoad`], or a [`DetachedBulkLoad`] until the store being
/// created is open.
enum Session<'s> {
    Opening {
        detached: DetachedBulkLoad,
        opening: &'s Opening,
        options: BulkOptions,
    },
    Open(BulkLoad<'s>),
    /// Only between the two, while taking over.
    Switching,
}

/// The error of a session whose take-over failed (the load stops at that error).
fn abandoned() -> LoadError {
    LoadError::Io {
        path: "<bulk load>".into(),
        source: std::io::Error::other("the bulk load was abandoned after an error"),
    }
}

impl<'s> Session<'s> {
    fn encoder(&self) -> Result<BulkEncoder, LoadError> {
        match self {
            Session::Opening { detached, .. } => Ok(detached.encoder()),
            Session::Open(load) => Ok(load.encoder()),
            Session::Switching => Err(abandoned()),
        }
    }

    /// Writes everything and commits (see [`BulkLoad::finish`]).
    fn finish(mut self) -> Result<tern_store::BulkSummary, LoadError> {
        self.take_over()?;
        match self {
            Session::Open(load) => Ok(load.finish()?),
            _ => Err(abandoned()),
        }
    }

    /// Takes a batch of quads; once the store is open, hands everything over to it.
    fn add(&mut self, quads: &mut Vec<IdQuad>) -> Result<(), LoadError> {
        match self {
            Session::Opening {
                detached,
                opening,
                options,
            } => {
                detached.add(quads);
                // Waits for the store rather than hold more than the store's load would before spilling.
                if opening.ready() || detached.memory_bytes() >= options.max_memory / 3 {
                    self.take_over()?;
                }
                Ok(())
            }
            Session::Open(load) => Ok(load.add(quads)?),
            Session::Switching => Err(abandoned()),
        }
    }

    /// The store's [`BulkLoad`], waiting for the store if needed.
    fn take_over(&mut self) -> Result<&mut BulkLoad<'s>, LoadError> {
        // Left `Switching` if taking over fails.
        *self = match std::mem::replace(self, Session::Switching) {
            Session::Opening {
                detached,
                opening,
                options,
            } => Session::Open(opening.store()?.bulk_loader_from(&options, detached)?),
            other => other,
        };
        match self {
            Session::Open(load) => Ok(load),
            _ => Err(abandoned()),
        }
    }
}

/// One attempt; `Ok(None)` asks for a retry with sequential Turtle/TriG parsing.
fn load_inputs(
    mut session: Session<'_>,
    inputs: &[Input],
    options: &BulkLoadOptions,
    sequential_statements: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Option<LoadReport>, LoadError> {
    let start = Instant::now();
    let mut report = LoadReport::default();
    let bytes = Arc::new(AtomicU64::new(0));
    let total_bytes = inputs.iter().map(Input::size).sum::<Option<u64>>();
    for input in inputs {
        let (format, compression) = input_format(input, options.load.format)?;
        // Lenient Turtle/TriG is parsed sequentially: a wrong split must never skip valid statements.
        let parallel = !sequential_statements && !options.load.lenient;
        let stop = AtomicBool::new(false);
        let job = Job {
            input,
            format,
            compression,
            options: &options.load,
            salt: format!("t{:016x}", rand_u64()),
            stop: &stop,
            bytes: Arc::clone(&bytes),
            spare_quads: Mutex::default(),
            chunk_bytes: chunk_bytes(input, compression),
        };
        let outcome = run_input(
            &job,
            parallel,
            options.threads.max(1),
            &mut session,
            &mut report,
            &mut |parsed| {
                progress(&Progress {
                    input: input.name(),
                    bytes: bytes.load(Ordering::Relaxed),
                    total_bytes,
                    quads: parsed,
                })
            },
        );
        match outcome {
            Ok(()) => {}
            Err(Retry::Error(e)) => return Err(e),
            Err(Retry::Sequential) => {
                // The reference parser decides: a real error is reported with its true position.
                check_sequential(input, format, compression, &options.load)?;
                return Ok(None);
            }
        }
    }
    let parse_seconds = start.elapsed().as_secs_f64();
    let summary = session.finish()?;
    report.inserted = summary.inserted;
    report.bytes = bytes.load(Ordering::Relaxed);
    report.seconds = start.elapsed().as_secs_f64();
    report.phases = vec![("parse (wall)", parse_seconds)];
    report.phases.extend(summary.phases);
    report.spilled_runs = summary.spilled_runs;
    progress(&Progress {
        input: String::new(),
        bytes: report.bytes,
        total_bytes,
        quads: report.parsed,
    });
    Ok(Some(report))
}

enum Retry {
    Error(LoadError),
    Sequential,
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn run_input(
    job: &Job<'_>,
    parallel: bool,
    threads: usize,
    session: &mut Session<'_>,
    report: &mut LoadReport,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Retry> {
    // One chunk waiting per worker is enough (the reader copies a chunk from the page cache in about a
    // tenth of the time a worker takes to encode it), and every chunk buffer is memory in use: with
    // chunks of up to 4 MiB, a queue of two per worker held 8 MiB more.
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(threads);
    let (out_tx, out_rx) = sync_channel::<Message>(threads * 2);
    // Chunk buffers come back for reuse: fresh buffers cost page faults and zeroing every time.
    let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(threads * 2 + 2);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let encoders = (0..threads)
        .map(|_| session.encoder())
        .collect::<Result<Vec<_>, _>>()
        .map_err(Retry::Error)?;
    std::thread::scope(|scope| {
        {
            let out_tx = out_tx.clone();
            scope.spawn(move || {
                if let Err(e) = read_chunks(job, parallel, &chunk_tx, &recycle_rx, &out_tx) {
                    job.stop.store(true, Ordering::Relaxed);
                    let _ = out_tx.send(Message::Failed(e));
                }
            });
        }
        for mut encoder in encoders {
            let chunk_rx = Arc::clone(&chunk_rx);
            let out_tx = out_tx.clone();
            let recycle_tx = recycle_tx.clone();
            scope.spawn(move || worker(job, &chunk_rx, &out_tx, &recycle_tx, &mut encoder));
        }
        // Only workers hold the chunk receiver: once they all stop, the reader's sends fail and it stops
        // too, so an error can never leave the reader blocked on a full channel.
        drop(chunk_rx);
        drop(out_tx);
        drop(recycle_tx);
        let mut first_error = None;
        for msg in out_rx.iter() {
            if first_error.is_some() {
                continue; // drain so that workers can exit
            }
            match msg {
                Message::Encoded(mut e) => {
                    report.parsed += e.parsed;
                    report.skipped += e.skipped;
                    for err in e.errors.drain(..) {
                        if report.errors.len() < 10 {
                            report.errors.push(err);
                        }
                    }
                    if let Err(err) = session.add(&mut e.quads) {
                        first_error = Some(Retry::Error(err));
                        job.stop.store(true, Ordering::Relaxed);
                    }
                    let mut spare = job.spare_quads.lock().unwrap_or_else(|e| e.into_inner());
                    if spare.len() < threads * 2 + 2 {
                        spare.push(e.quads);
                    }
                    progress(report.parsed);
                }
                Message::Failed(e) => {
                    first_error = Some(Retry::Error(e));
                    job.stop.store(true, Ordering::Relaxed);
                }
                Message::ChunkFailed => {
                    first_error = Some(Retry::Sequential);
                    job.stop.store(true, Ordering::Relaxed);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// Reader thread: cuts the input into chunks (or parses it, for RDF/XML and JSON-LD).
fn read_chunks(
    job: &Job<'_>,
    parallel: bool,
    tx: &SyncSender<Chunk>,
    recycled: &Receiver<Vec<u8>>,
    out: &SyncSender<Message>,
) -> Result<(), LoadError> {
    let mappable = match job.format {
        Format::NTriples | Format::NQuads => true,
        Format::Turtle | Format::TriG => parallel,
        _ => false,
    };
    if let Some(map) = mappable.then(|| map_plain_file(job)).flatten() {
        cut_mapped(job, map, tx);
        return Ok(());
    }
    let mut reader = job
        .input
        .open(job.compression, Arc::clone(&job.bytes))
        .map_err(|e| io_error(job.input, e))?;
    match job.format {
        Format::NTriples | Format::NQuads => {
            // The partial line at the end of a chunk starts the next one.
            let mut carry: Vec<u8> = Vec::new();
            let mut spare: Option<Vec<u8>> = None;
            let mut first_line = 0u64;
            loop {
                let mut buf = spare
                    .take()
                    .or_else(|| recycled.try_recv().ok())
                    .unwrap_or_default();
                // Buffers keep their full length (initialized once); `filled` says what is valid.
                let want = carry.len() + job.chunk_bytes;
                if buf.len() < want {
                    // Room for a long carried line, so that recycled buffers rarely grow.
                    buf.resize(want.max(job.chunk_bytes + (64 << 10)), 0);
                }
                buf[..carry.len()].copy_from_slice(&carry);
                let mut filled = carry.len();
                let eof = read_up_to(&mut reader, &mut buf[..want], &mut filled)
                    .map_err(|e| io_error(job.input, e))?;
                let cut = if eof {
                    filled
                } else {
                    buf[..filled]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1)
                };
                carry.clear();
                carry.extend_from_slice(&buf[cut..filled]);
                if cut > 0 {
                    let lines = memchr::memchr_iter(b'\n', &buf[..cut]).count() as u64;
                    let chunk = Chunk::Lines {
                        text: Text::Read {
                            bytes: buf,
                            len: cut,
                        },
                        first_line: Some(first_line),
                    };
                    if tx.send(chunk).is_err() || job.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    first_line += lines;
                } else {
                    spare = Some(buf); // a line longer than a chunk: read on with a larger buffer
                }
                if eof {
                    return Ok(());
                }
            }
        }
        Format::Turtle | Format::TriG if parallel => {
            let mut splitter = split::Splitter::new(job.format == Format::TriG);
            let mut header = Arc::new(String::new());
            let mut buf: Vec<u8> = Vec::with_capacity(job.chunk_bytes * 2);
            loop {
                let eof = fill(&mut reader, &mut buf, job.chunk_bytes)
                    .map_err(|e| io_error(job.input, e))?;
                let end = if eof { buf.len() } else { splitter.scan(&buf) };
                if end > 0 {
                    let chunk = cut_chunk(&mut buf, end, recycled, job.chunk_bytes * 2);
                    if !eof {
                        splitter.consume(end);
                    }
                    let len = chunk.len();
                    if tx
                        .send(Chunk::Statements {
                            header: Arc::clone(&header),
                            text: Text::Read { bytes: chunk, len },
                        })
                        .is_err()
                        || job.stop.load(Ordering::Relaxed)
                    {
                        return Ok(());
                    }
                    if splitter.header.len() != header.len() {
                        header = Arc::new(splitter.header.clone());
                    }
                }
                if eof {
                    return Ok(());
                }
            }
        }
        Format::RdfXml if parallel => {
            let mut splitter = xmlsplit::XmlSplitter::new();
            let mut header: Option<Arc<(String, String)>> = None;
            let mut buf: Vec<u8> = Vec::with_capacity(job.chunk_bytes * 2);
            loop {
                let eof = fill(&mut reader, &mut buf, job.chunk_bytes)
                    .map_err(|e| io_error(job.input, e))?;
                let end = splitter.scan(&buf);
                // A document outside the splitter's model (DOCTYPE, rdf:ID, another root) is parsed
                // sequentially: the same retry as for a chunk that fails.
                if splitter.unsupported.is_some() {
                    let _ = out.send(Message::ChunkFailed);
                    return Ok(());
                }
                if end > 0 {
                    let header = match (&header, &splitter.header) {
                        (Some(h), _) => Arc::clone(h),
                        (None, Some(h)) => {
                            let h = Arc::new((h.clone(), splitter.footer.clone()));
                            header = Some(Arc::clone(&h));
                            h
                        }
                        // Boundaries are only reported after the root start tag, which sets the header.
                        (None, None) => {
                            let _ = out.send(Message::ChunkFailed);
                            return Ok(());
                        }
                    };
                    let mut chunk = cut_chunk(&mut buf, end, recycled, job.chunk_bytes * 2);
                    chunk.drain(..splitter.skip);
                    splitter.consume(end);
                    if tx
                        .send(Chunk::Elements {
                            header,
                            bytes: chunk,
                        })
                        .is_err()
                        || job.stop.load(Ordering::Relaxed)
                    {
                        return Ok(());
                    }
                }
                if eof {
                    // Only the end tag (and blanks) may follow the last element; anything else, or a
                    // document the splitter did not understand, goes to the sequential parser.
                    let tail_ok = splitter.closed
                        && std::str::from_utf8(&buf)
                            .is_ok_and(|t| t.trim() == splitter.footer.as_str());
                    if !tail_ok {
                        let _ = out.send(Message::ChunkFailed);
                    }
                    return Ok(());
                }
            }
        }
        _ => {
            let parser = read_quads(job.input, job.format, job.options, reader)?;
            let mut batch = Vec::with_capacity(8192);
            let mut last_offset = None;
            for item in parser {
                match item {
                    Ok(q) => {
                        batch.push(q);
                        if batch.len() == 8192 {
                            if tx.send(Chunk::Quads(std::mem::take(&mut batch))).is_err() {
                                return Ok(());
                            }
                            batch.reserve(8192);
                        }
                    }
                    Err(RdfParseError::Syntax(e)) => {
                        let error = syntax_error(job.input, job.compression, &e);
                        if !job.options.lenient {
                            return Err(LoadError::Syntax(Box::new(error)));
                        }
                        let offset = e.location().map(|l| l.start.offset);
                        let stuck = offset.is_some() && offset == last_offset;
                        last_offset = offset;
                        let skipped = Encoded {
                            quads: Vec::new(),
                            parsed: 0,
                            skipped: 1,
                            errors: vec![error],
                        };
                        if out.send(Message::Encoded(skipped)).is_err() {
                            return Ok(());
                        }
                        if stuck {
                            break;
                        }
                    }
                    Err(RdfParseError::Io(e)) => return Err(io_error(job.input, e)),
                }
                if job.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            let _ = tx.send(Chunk::Quads(batch));
            Ok(())
        }
    }
}

/// Maps `job`'s input into memory if it is a plain, non-empty regular file (`None`: read it instead).
///
/// Reading copied every byte from the page cache into chunk buffers, which were zeroed when first grown, and
/// counted the lines of each chunk on the reader thread, beside two busy workers. Mapped chunks are parsed
/// where the page cache holds them: BSBM (Turtle) 0.355 -> 0.325 s, the 10M-triple file's parse 3.06 ->
/// 2.67 s. RDF/XML is still read: mapped, its splitter's scan and the parse both took longer.
fn map_plain_file(job: &Job<'_>) -> Option<memmap2::Mmap> {
    let Input::Path(path) = job.input else {
        return None;
    };
    if job.compression != Compression::None {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    // SAFETY: the map is read-only and lives as long as the chunks that borrow it. Another process
    // truncating the file during the load would make reads past its new end fault (SIGBUS), as in every
    // tool that maps its input (ripgrep, grep); README says not to change an input while it loads.
    // Any failure to map falls back to reading.
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

/// Cuts a mapped input into chunks of whole lines (N-Triples, N-Quads) or statements (Turtle, TriG): the
/// same chunks as reading it would give (see [`chunk_bytes`]).
fn cut_mapped(job: &Job<'_>, map: memmap2::Mmap, tx: &SyncSender<Chunk>) {
    let map = Arc::new(map);
    let len = map.len();
    let mut splitter = matches!(job.format, Format::Turtle | Format::TriG)
        .then(|| split::Splitter::new(job.format == Format::TriG));
    let mut header = Arc::new(String::new());
    let mut start = 0;
    // The end of the text scanned for the next cut; it grows by a chunk while no cut is found.
    let mut window: usize = 0;
    while start < len {
        window = window.max(start).saturating_add(job.chunk_bytes).min(len);
        let end = if window == len {
            len
        } else if let Some(splitter) = &mut splitter {
            match splitter.scan(&map[start..window]) {
                0 => continue,
                end => {
                    splitter.consume(end);
                    start + end
                }
            }
        } else {
            // After the last line break in the window, or the first after it for a longer line.
            match memchr::memrchr(b'\n', &map[start..window]) {
                Some(p) => start + p + 1,
                None => memchr::memchr(b'\n', &map[window..]).map_or(len, |p| window + p + 1),
            }
        };
        job.bytes.fetch_add((end - start) as u64, Ordering::Relaxed);
        let text = Text::Mapped {
            map: Arc::clone(&map),
            start,
            end,
        };
        let chunk = match &splitter {
            Some(_) => Chunk::Statements {
                header: Arc::clone(&header),
                text,
            },
            None => Chunk::Lines {
                text,
                first_line: None,
            },
        };
        if tx.send(chunk).is_err() || job.stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(splitter) = &splitter {
            if splitter.header.len() != header.len() {
                header = Arc::new(splitter.header.clone());
            }
        }
        start = end;
    }
}

/// Unmaps the pages of a parsed chunk. Mapped pages of the file count in the process's resident memory
/// until unmapped: without this, a load's peak RSS would grow by the size of its input.
fn release_mapped(map: &memmap2::Mmap, start: usize, end: usize) {
    // Whole pages only, which no other chunk touches; 64 KiB covers every page size Linux uses.
    const ALIGN: usize = 1 << 16;
    let from = start.next_multiple_of(ALIGN);
    let to = end / ALIGN * ALIGN;
    if from < to {
        // SAFETY: the map is a read-only file mapping; `DontNeed` only drops its page table entries, and
        // a later read of these pages (there is none) would fault them in again from the file.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
        };
    }
}

/// Splits `buf` at `end`: returns the first part and leaves the rest in `buf`, a buffer that came back from
/// the workers when there is one (a fresh buffer, of `capacity`, costs page faults and zeroing for every
/// chunk).
fn cut_chunk(
    buf: &mut Vec<u8>,
    end: usize,
    recycled: &Receiver<Vec<u8>>,
    capacity: usize,
) -> Vec<u8> {
    let mut rest = recycled
        .try_recv()
        .unwrap_or_else(|_| Vec::with_capacity(capacity));
    rest.clear();
    rest.extend_from_slice(&buf[end..]);
    buf.truncate(end);
    std::mem::replace(buf, rest)
}

/// Reads into `buf[*filled..]` until it is full or the input ends. Returns true at end of input.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8], filled: &mut usize) -> std::io::Result<bool> {
    while *filled < buf.len() {
        match reader.read(&mut buf[*filled..]) {
            Ok(0) => return Ok(true),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Appends up to `want` bytes. Returns true at end of input.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let target = buf.len() + want;
    while buf.len() < target {
        let old = buf.len();
        buf.resize(target, 0);
        match reader.read(&mut buf[old..]) {
            Ok(0) => {
                buf.truncate(old);
                return Ok(true);
            }
            Ok(n) => buf.truncate(old + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(old),
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    }
    Ok(false)
}

fn worker(
    job: &Job<'_>,
    rx: &Mutex<Receiver<Chunk>>,
    tx: &SyncSender<Message>,
    recycle: &SyncSender<Vec<u8>>,
    encoder: &mut BulkEncoder,
) {
    let mut lines = LineParser::new(job.format == Format::NQuads, job.salt.clone());
    let mut turtle = turtle::TurtleParser::new(job.salt.clone());
    let mut rdfxml = rdfxml::RdfXmlParser::default();
    let mut iris = ntriples::IriCache::new();
    loop {
        let chunk = {
            let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
            guard.recv()
        };
        let Ok(chunk) = chunk else { return };
        if job.stop.load(Ordering::Relaxed) {
            return;
        }
        let result = match chunk {
            Chunk::Lines { text, first_line } => {
                let first_line = || first_line.unwrap_or_else(|| text.lines_before());
                let result = parse_lines(job, &mut lines, encoder, text.bytes(), &first_line, tx);
                text.release(recycle);
                result
            }
            Chunk::Statements { header, text } => {
                let bytes = text.bytes();
                let result = match fast_statements(job, &mut turtle, encoder, &header, bytes, tx) {
                    Some(result) => result,
                    None => parse_statements(job, encoder, &header, bytes, tx),
                };
                text.release(recycle);
                result
            }
            Chunk::Elements { header, bytes } => {
                let fast =
                    fast_elements(job, &mut rdfxml, encoder, &mut iris, &header.0, &bytes, tx);
                let result = match fast {
                    Some(result) => result,
                    None => parse_elements(job, encoder, &mut iris, &header, &bytes, tx),
                };
                let _ = recycle.try_send(bytes);
                result
            }
            Chunk::Quads(quads) => {
                let enc = Encoded {
                    parsed: quads.len() as u64,
                    ..job.batch()
                };
                for q in &quads {
                    encoder.push(q.as_ref());
                }
                finish_batch(encoder, enc)
            }
        };
        let msg = match result {
            Ok(enc) => Message::Encoded(enc),
            Err(msg) => {
                job.stop.store(true, Ordering::Relaxed);
                msg
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

fn with_graph<'a>(q: QuadRef<'a>, options: &'a LoadOptions) -> QuadRef<'a> {
    match (&options.graph, q.graph_name) {
        (Some(g), GraphNameRef::DefaultGraph) => {
            QuadRef::new(q.subject, q.predicate, q.object, g.as_ref())
        }
        _ => q,
    }
}

/// Renames blank nodes of a quad parsed by oxttl with the input's salt (moves, never clones, the rest).
fn salted(q: Quad, salt: &str) -> Quad {
    let rename = |b: BlankNode| BlankNode::new_unchecked(format!("{salt}{}", b.as_str()));
    let Quad {
        subject,
        predicate,
        object,
        graph_name,
    } = q;
    let subject = match subject {
        NamedOrBlankNode::BlankNode(b) => rename(b).into(),
        s => s,
    };
    let object = match object {
        Term::BlankNode(b) => rename(b).into(),
        o => o,
    };
    let graph_name = match graph_name {
        GraphName::BlankNode(b) => rename(b).into(),
        g => g,
    };
    Quad::new(subject, predicate, object, graph_name)
}

/// Encodes one parsed quad into the batch, sending the batch on when it is full.
fn encode_quad(
    job: &Job<'_>,
    encoder: &mut BulkEncoder,
    enc: &mut Encoded,
    tx: &SyncSender<Message>,
    quad: QuadRef<'_>,
) -> Result<(), Message> {
    encoder.push(with_graph(quad, job.options));
    count_pushed(job, encoder, enc, tx)
}

/// Encodes the quads still pending at the end of a chunk and returns the batch.
fn finish_batch(encoder: &mut BulkEncoder, mut enc: Encoded) -> Result<Encoded, Message> {
    encoder
        .flush(&mut enc.quads)
        .map_err(|e| Message::Failed(e.into()))?;
    Ok(enc)
}

/// Counts a quad just pushed into `encoder`, sending the batch on when it is full.
fn count_pushed(
    job: &Job<'_>,
    encoder: &mut BulkEncoder,
    enc: &mut Encoded,
    tx: &SyncSender<Message>,
) -> Result<(), Message> {
    enc.parsed += 1;
    if encoder.len() >= FLUSH_QUADS {
        encoder
            .flush(&mut enc.quads)
            .map_err(|e| Message::Failed(e.into()))?;
        let full = std::mem::replace(enc, job.batch());
        tx.send(Message::Encoded(full)).map_err(|_| {
            Message::Failed(LoadError::Io {
                path: "<pipeline>".into(),
                source: std::io::Error::other("collector stopped"),
            })
        })?;
    }
    Ok(())
}

fn parse_lines(
    job: &Job<'_>,
    fast: &mut LineParser,
    encoder: &mut BulkEncoder,
    bytes: &[u8],
    first_line: &dyn Fn() -> u64,
    tx: &SyncSender<Message>,
) -> Result<Encoded, Message> {
    let mut enc = job.batch();
    // A valid chunk is split as text once; with invalid UTF-8, the bad lines go to oxttl, which reports them.
    type Lines<'b> = Box<dyn Iterator<Item = (&'b [u8], Option<&'b str>)> + 'b>;
    let lines: Lines<'_> = match std::str::from_utf8(bytes) {
        // memchr's line search is vectorized; `str::split` scans a word at a time (4% of a LUBM-10 load).
        Ok(text) => {
            let mut start = 0;
            let ends = memchr::memchr_iter(b'\n', bytes)
                .chain((!bytes.ends_with(b"\n") || bytes.is_empty()).then_some(bytes.len()));
            Box::new(ends.map(move |end| {
                // Both ends are at '\n' bytes (or the ends of the text), so they are char boundaries.
                let line = &text[start..end];
                start = end + 1;
                (line.as_bytes(), Some(line))
            }))
        }
        Err(_) => Box::new(
            bytes
                .split(|&b| b == b'\n')
                .map(|r| (r, std::str::from_utf8(r).ok())),
        ),
    };
    // Computed at the first error of the chunk, if any.
    let mut chunk_first_line = None;
    for (line_in_chunk, (raw, line)) in (0u64..).zip(lines) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = line.map(|l| l.strip_suffix('\r').unwrap_or(l));
        let pushed = match line.map(|l| fast.parse_unchecked(l)) {
            // IRIs are checked only for terms new to the encoder (see `push_checked`).
            Some(Line::Quad(q)) => {
                let pushed = encoder.push_checked(with_graph(q, job.options), ntriples::valid_term);
                if pushed {
                    count_pushed(job, encoder, &mut enc, tx)?;
                }
                pushed
            }
            Some(Line::Empty) => true,
            Some(Line::Fallback) | None => false,
        };
        // Outside the fast subset, or an invalid IRI: oxttl parses the line (and reports the error).
        if !pushed {
            let parsed: Vec<Result<Quad, oxttl::TurtleSyntaxError>> =
                if job.format == Format::NQuads {
                    NQuadsParser::new().for_slice(raw).collect()
                } else {
                    NTriplesParser::new()
                        .for_slice(raw)
                        .map(|t| t.map(|t| t.in_graph(GraphName::DefaultGraph)))
                        .collect()
                };
            for item in parsed {
                match item {
                    Ok(q) => {
                        let q = salted(q, &job.salt);
                        encode_quad(job, encoder, &mut enc, tx, q.as_ref())?;
                    }
                    Err(e) => {
                        let column = e.location().start.column;
                        let error = SyntaxError {
                            input: job.input.name(),
                            line: *chunk_first_line.get_or_insert_with(first_line)
                                + line_in_chunk
                                + 1,
                            column: column + 1,
                            message: e.to_string(),
                            snippet: Some(String::from_utf8_lossy(raw).chars().take(160).collect()),
                        };
                        if !job.options.lenient {
                            return Err(Message::Failed(LoadError::Syntax(Box::new(error))));
                        }
                        enc.skipped += 1;
                        if enc.errors.len() < 10 {
                            enc.errors.push(error);
                        }
                        break;
                    }
                }
            }
        }
    }
    finish_batch(encoder, enc)
}

/// Files named `*.{ext}` under `shared/rdf-tests/{dir}`, for tests that hold the fast paths to the reference
/// parsers on the W3C suites.
#[cfg(test)]
pub(crate) fn w3c_files(dir: &str, ext: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/rdf-tests")
        .join(dir);
    let mut stack = vec![root];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("rdf-tests").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                files.push(path);
            }
        }
    }
    files
}

/// Turtle chunks in the fast subset ([`turtle`]); `None` when the chunk must go to `oxttl`.
fn fast_statements(
    job: &Job<'_>,
    parser: &mut turtle::TurtleParser,
    encoder: &mut BulkEncoder,
    header: &str,
    bytes: &[u8],
    tx: &SyncSender<Message>,
) -> Option<Result<Encoded, Message>> {
    if job.format != Format::Turtle {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    if !parser.parse(header, text) {
        return None;
    }
    Some(encode_triples(job, encoder, tx, parser.parsed(), text))
}

/// Encodes the triples a fast parser read from `chunk`.
fn encode_triples(
    job: &Job<'_>,
    encoder: &mut BulkEncoder,
    tx: &SyncSender<Message>,
    parsed: &parsed::Parsed,
    chunk: &str,
) -> Result<Encoded, Message> {
    let mut enc = job.batch();
    for i in 0..parsed.len() {
        let q = parsed.triple(chunk, i).in_graph(GraphNameRef::DefaultGraph);
        encode_quad(job, encoder, &mut enc, tx, q)?;
    }
    finish_batch(encoder, enc)
}

/// RDF/XML chunks in the fast subset ([`rdfxml`]); `None` when the chunk must go to `oxrdfxml`.
fn fast_elements(
    job: &Job<'_>,
    parser: &mut rdfxml::RdfXmlParser,
    encoder: &mut BulkEncoder,
    iris: &mut ntriples::IriCache,
    header: &str,
    bytes: &[u8],
    tx: &SyncSender<Message>,
) -> Option<Result<Encoded, Message>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !parser.parse(header, text, iris) {
        return None;
    }
    Some(encode_triples(job, encoder, tx, parser.parsed(), text))
}

fn parse_statements(
    job: &Job<'_>,
    encoder: &mut BulkEncoder,
    header: &str,
    bytes: &[u8],
    tx: &SyncSender<Message>,
) -> Result<Encoded, Message> {
    let mut enc = job.batch();
    let mut text = Vec::with_capacity(header.len() + bytes.len());
    text.extend_from_slice(header.as_bytes());
    text.extend_from_slice(bytes);
    let base = base_iri(job.input, job.options);
    let mut handle = |item: Result<Quad, oxttl::TurtleSyntaxError>| -> Result<(), Message> {
        match item {
            Ok(q) => {
                let q = salted(q, &job.salt);
                encode_quad(job, encoder, &mut enc, tx, q.as_ref())
            }
            Err(_) => Err(Message::ChunkFailed),
        }
    };
    if job.format == Format::TriG {
        let mut p = TriGParser::new();
        if let Some(b) = &base {
            p = p
                .with_base_iri(b.clone())
                .unwrap_or_else(|_| TriGParser::new());
        }
        p.for_slice(&text).try_for_each(&mut handle)?;
    } else {
        let mut p = TurtleParser::new();
        if let Some(b) = &base {
            p = p
                .with_base_iri(b.clone())
                .unwrap_or_else(|_| TurtleParser::new());
        }
        p.for_slice(&text)
            .try_for_each(|t| handle(t.map(|t| t.in_graph(GraphName::DefaultGraph))))?;
    }
    finish_batch(encoder, enc)
}

/// Parses top-level RDF/XML elements wrapped in the document's root tags. Blank node labels
/// (`rdf:nodeID`) are kept and salted, so they agree across chunks; XML literals are canonicalized as the
/// sequential path does.
fn parse_elements(
    job: &Job<'_>,
    encoder: &mut BulkEncoder,
    iris: &mut ntriples::IriCache,
    header: &(String, String),
    bytes: &[u8],
    tx: &SyncSender<Message>,
) -> Result<Encoded, Message> {
    let mut enc = job.batch();
    let mut text = Vec::with_capacity(header.0.len() + bytes.len() + header.1.len());
    text.extend_from_slice(header.0.as_bytes());
    text.extend_from_slice(bytes);
    text.extend_from_slice(header.1.as_bytes());
    let mut parser = oxrdfxml::RdfXmlParser::new();
    if xmlsplit::lenient_is_exact(&text, iris) {
        parser = parser.lenient();
    }
    if let Some(b) = base_iri(job.input, job.options) {
        parser = parser
            .with_base_iri(b)
            .unwrap_or_else(|_| oxrdfxml::RdfXmlParser::new());
    }
    for item in parser.for_slice(&text) {
        let Ok(t) = item else {
            return Err(Message::ChunkFailed);
        };
        let q = crate::xmlliteral::canonicalize_quad(salted(
            t.in_graph(GraphName::DefaultGraph),
            &job.salt,
        ));
        encode_quad(job, encoder, &mut enc, tx, q.as_ref())?;
    }
    finish_batch(encoder, enc)
}

/// Parses a whole input with the sequential reference parser; returns its first syntax error, if any.
fn check_sequential(
    input: &Input,
    format: Format,
    compression: Compression,
    options: &LoadOptions,
) -> Result<(), LoadError> {
    let reader = input
        .open(compression, Arc::default())
        .map_err(|e| io_error(input, e))?;
    for item in read_quads(input, format, options, reader)? {
        match item {
            Ok(_) => {}
            Err(e) => return Err(parse_error(input, compression, e)),
        }
    }
    Ok(())
}
