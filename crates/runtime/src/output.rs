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

/// A worker's stdout and stderr buffers, in one allocation.
///
/// While muted (the worker is replaying code whose output was captured
/// when it ran live) writes succeed but keep nothing.
#[derive(Debug)]
pub(crate) struct Output {
    rings: [Mutex<Ring>; 2],
    muted: AtomicBool,
}

impl Output {
    /// Empty buffers of `limit` bytes each.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        let ring = || {
            Mutex::new(Ring {
                bytes: VecDeque::new(),
                limit,
                dropped: 0,
            })
        };
        Arc::new(Self {
            rings: [ring(), ring()],
            muted: AtomicBool::new(false),
        })
    }

    /// Stops (`true`) or restarts keeping what the worker writes.
    pub(crate) fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Release);
    }

    /// The WASI stream for stdout.
    pub(crate) fn stdout(self: &Arc<Self>) -> Capture {
        Capture(Arc::clone(self), 0)
    }

    /// The WASI stream for stderr.
    pub(crate) fn stderr(self: &Arc<Self>) -> Capture {
        Capture(Arc::clone(self), 1)
    }

    /// What the worker wrote, with the counts of bytes dropped.
    pub(crate) fn snapshot(&self) -> WorkerOutput {
        let (stdout, stdout_dropped) = self.ring_snapshot(0);
        let (stderr, stderr_dropped) = self.ring_snapshot(1);
        WorkerOutput {
            stdout,
            stderr,
            stdout_dropped,
            stderr_dropped,
        }
    }

    fn ring(&self, stream: usize) -> MutexGuard<'_, Ring> {
        // A poisoned lock only means a writer panicked mid-copy; the bytes are
        // still valid output, so keep serving them.
        self.rings[stream].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ring_snapshot(&self, stream: usize) -> (Vec<u8>, u64) {
        let ring = self.ring(stream);
        (ring.bytes.iter().copied().collect(), ring.dropped)
    }

    fn push(&self, stream: usize, data: &[u8]) {
        if self.muted.load(Ordering::Acquire) {
            return;
        }
        let mut ring = self.ring(stream);
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
}

/// One of a worker's output streams, as WASI's stdout or stderr.
#[derive(Clone, Debug)]
pub(crate) struct Capture(Arc<Output>, usize);

impl Capture {
    fn push(&self, data: &[u8]) {
        self.0.push(self.1, data);
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
        let output = Output::new(8);
        let (stdout, stderr) = (output.stdout(), output.stderr());
        stdout.push(b"hello ");
        stdout.push(b"world");
        stderr.push(b"oops");
        assert_eq!(output.ring_snapshot(0), (b"lo world".to_vec(), 3));
        stdout.push(b"0123456789ab");
        assert_eq!(output.ring_snapshot(0), (b"456789ab".to_vec(), 15));
        output.set_muted(true);
        stdout.push(b"replayed");
        stderr.push(b"replayed");
        let all = output.snapshot();
        assert_eq!((all.stdout, all.stdout_dropped), (b"456789ab".to_vec(), 15));
        assert_eq!((all.stderr, all.stderr_dropped), (b"oops".to_vec(), 0));
    }
}
