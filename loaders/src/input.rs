//! Opening inputs: files or standard input, plain, gzip or zstd, with a byte counter for progress.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::format::{Compression, Format};

/// Where RDF comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file.
    Path(PathBuf),
    /// Standard input (`-` on the command line).
    Stdin,
}

impl Input {
    /// `-` is standard input, anything else a path.
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    /// Name used in messages.
    pub fn name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "-".to_owned(),
        }
    }

    /// Format and compression told by the file name (standard input: none).
    pub fn detect(&self) -> (Option<Format>, Compression) {
        match self {
            Input::Path(p) => Format::from_path(p),
            Input::Stdin => (None, Compression::None),
        }
    }

    /// Size in bytes as stored (compressed size for compressed files), if known.
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::Path(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
        }
    }

    /// Opens the input, decompressing on the fly. `counter` receives the bytes read from the underlying
    /// file (before decompression), so progress can be compared with [`Input::size`].
    pub fn open(
        &self,
        compression: Compression,
        counter: Arc<AtomicU64>,
    ) -> io::Result<Box<dyn Read + Send>> {
        let raw: Box<dyn Read + Send> = match self {
            Input::Path(p) => Box::new(File::open(p)?),
            Input::Stdin => Box::new(io::stdin()),
        };
        let counted = BufReader::with_capacity(
            1 << 16,
            CountingReader {
                inner: raw,
                counter,
            },
        );
        Ok(match compression {
            Compression::None => Box::new(counted),
            Compression::Gzip => Box::new(BufReader::with_capacity(
                1 << 16,
                flate2::bufread::MultiGzDecoder::new(counted),
            )),
            Compression::Zstd => Box::new(BufReader::with_capacity(
                1 << 16,
                zstd::Decoder::with_buffer(counted)?,
            )),
        })
    }
}

struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads line `line` (0-based) of a file again, for error messages. At most 160 characters.
pub(crate) fn line_of(path: &Path, compression: Compression, line: u64) -> Option<String> {
    let input = Input::Path(path.to_path_buf());
    let reader = BufReader::new(input.open(compression, Arc::default()).ok()?);
    let text = reader.lines().nth(usize::try_from(line).ok()?)?.ok()?;
    Some(text.chars().take(160).collect())
}
