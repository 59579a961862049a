//! Guest stdout/stderr: captured into a capped buffer, drained into `tracing` with the
//! plugin's name after each call. Writes never fail; bytes over the cap are counted and
//! dropped, so a chatty plugin cannot exhaust host memory or stall.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: u64,
}

/// One captured output stream of one plugin instance.
#[derive(Clone)]
pub struct GuestOutput {
    buffer: Arc<Mutex<Buffer>>,
    cap: usize,
}

impl GuestOutput {
    /// A stream that keeps at most `cap` bytes between drains.
    pub fn new(cap: usize) -> Self {
        Self {
            buffer: Arc::new(Mutex::new(Buffer::default())),
            cap,
        }
    }

    fn push(&self, data: &[u8]) {
        if let Ok(mut buf) = self.buffer.lock() {
            let room = self.cap.saturating_sub(buf.bytes.len());
            let keep = data.len().min(room);
            buf.bytes
                .extend_from_slice(data.get(..keep).unwrap_or_default());
            buf.dropped += (data.len() - keep) as u64;
        }
    }

    /// Bytes dropped over the cap since creation.
    pub fn dropped(&self) -> u64 {
        self.buffer.lock().map(|b| b.dropped).unwrap_or(0)
    }

    /// Logs buffered lines as `tracing` events and empties the buffer.
    pub fn drain_to_log(&self, plugin: &str, stream: &'static str) {
        let Ok(mut buf) = self.buffer.lock() else {
            return;
        };
        if buf.bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&buf.bytes);
        for line in text.lines().filter(|l| !l.is_empty()) {
            tracing::info!(plugin = %plugin, stream, "{line}");
        }
        buf.bytes.clear();
        if buf.dropped > 0 {
            tracing::warn!(plugin = %plugin, stream, dropped_bytes = buf.dropped, "plugin output over cap dropped");
            buf.dropped = 0;
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_counted_and_drained() {
        let out = GuestOutput::new(10);
        out.push(b"hello\n");
        out.push(b"world, this is long\n");
        assert_eq!(out.dropped(), 16);
        out.drain_to_log("p", "stdout");
        assert_eq!(
            out.dropped(),
            0,
            "the drain reports and resets the dropped count"
        );
        let mut stream = out.clone();
        OutputStream::write(&mut stream, Bytes::from_static(b"0123456789abc")).unwrap();
        assert_eq!(out.dropped(), 3);
        assert!(
            OutputStream::check_write(&mut stream).unwrap() > 0,
            "writes never block or fail"
        );
    }
}
