//! Streaming response bodies written by blocking code (query evaluation, dumps).
//!
//! The producer writes into a [`ChannelWriter`] on a blocking thread; full 64 KiB chunks go through a
//! bounded channel, so a slow client applies backpressure instead of the server buffering the result.
//! When the client goes away the channel closes, the writer fails and the cancellation flag stops the
//! query at its next check.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Bytes buffered before a chunk is sent.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between producer and connection.
const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, io::Error>;

/// The blocking end of a streamed body.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
    cancel: Arc<AtomicBool>,
}

impl ChannelWriter {
    /// Ends the body with an error, so the client sees a truncated response rather than a clean end.
    pub(crate) fn abort(mut self, message: String) {
        self.buf.clear();
        let _ = self.tx.blocking_send(Err(io::Error::other(message)));
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            self.cancel.store(true, Ordering::Relaxed);
            io::Error::new(io::ErrorKind::BrokenPipe, "client disconnected")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// A writer for the blocking side and the body it feeds. `cancel` is set when the client disconnects.
pub(crate) fn channel(cancel: Arc<AtomicBool>) -> (ChannelWriter, Body) {
    let (tx, mut rx) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        ChannelWriter {
            tx,
            // Grown on demand: most answers are a few hundred bytes.
            buf: Vec::new(),
            cancel,
        },
        Body::from_stream(stream),
    )
}
