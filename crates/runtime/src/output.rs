//! Per-worker capture of stdout and stderr.
//!
//! Each worker writes into its own bounded buffer instead of the host's
//! stdout, so output of many workers never interleaves and an embedder (or the
//! REST API) can read one worker's output at any time. When a buffer is full
//! the oldest bytes are dropped and counted, so a chatty guest cannot exhaust
//! host memory and can never fail because of its own logging.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Output a worker has written so far (the newest bytes, up to the limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerOutput {
    /// What the worker wrote to stdout.
    pub stdout: Vec<u8>,
    /// What the worker wrote to stderr.
    pub stderr: Vec<u8>,
    /// Bytes dropped from the start of stdout because the buffer was full.
    pub stdout_dropped: u64,
    /// Bytes dropped from the start of stderr because the buffer was full.
    pub stderr_dropped: u64,
}

#[derive(Debug)]
struct Ring {
    bytes: VecDeque<u8>,
    limit: usize,
    dropped: u64,
}

/// A bounded, shareable output buffer that implements WASI's stdout stream.
///
/// While `muted` is set (the worker is replaying code whose output was
/// captured when it ran live) writes succeed but keep nothing.
#[derive(Clone, Debug)]
pub(crate) struct Capture(Arc<Mutex<Ring>>, Arc<AtomicBool>);

impl Capture {
    pub(crate) fn new(limit: usize, muted: Arc<AtomicBool>) -> Self {
        Self(
            Arc::new(Mutex::new(Ring {
                bytes: VecDeque::new(),
                limit,
                dropped: 0,
            })),
            muted,
        )
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A poisoned lock only means a writer panicked mid-copy; the bytes are
        // still valid output, so keep serving them.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, data: &[u8]) {
        if self.1.load(Ordering::Acquire) {
            return;
        }
        let mut ring = self.ring();
        let limit = ring.limit;
        let data = if data.len() > limit {
            ring.dropped += (data.len() - limit) as u64;
            &data[data.len() - limit..]
        } else {
            data
        };
        let overflow = (ring.bytes.len() + data.len()).saturating_sub(limit);
        ring.bytes.drain(..overflow);
        ring.dropped += overflow as u64;
        ring.bytes.extend(data);
    }

    /// The buffered bytes and how many were dropped before them.
    pub(crate) fn snapshot(&self) -> (Vec<u8>, u64) {
        let ring = self.ring();
        (ring.bytes.iter().copied().collect(), ring.dropped)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: the ring drops old bytes instead of refusing new ones.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes_and_counts_the_dropped() {
        let muted = Arc::new(AtomicBool::new(false));
        let capture = Capture::new(8, Arc::clone(&muted));
        capture.push(b"hello ");
        capture.push(b"world");
        assert_eq!(capture.snapshot(), (b"lo world".to_vec(), 3));
        capture.push(b"0123456789ab");
        assert_eq!(capture.snapshot(), (b"456789ab".to_vec(), 15));
        muted.store(true, Ordering::Release);
        capture.push(b"replayed");
        assert_eq!(capture.snapshot(), (b"456789ab".to_vec(), 15));
    }
}
