//! The byte stream of one client connection, as hyper sees it.
//!
//! Two things hyper cannot be configured to do are done here, below it:
//!
//! - **Idle deadline.** A connection on which no byte moves in either direction for
//!   `idle_timeout` while the server waits on the client (a peer that stops reading its
//!   responses, or stops sending) fails with `TimedOut`, so it cannot hold a connection slot
//!   forever. While a handler runs ([`Busy`]) the clock does not run: a long scan is the
//!   server's time, not the client's, and the handler bounds its own body read. Hyper's own
//!   header timeout covers the time to a request head.
//! - **JSON protocol errors.** When hyper cannot parse a request it answers by itself (400,
//!   414, 431) with an empty body. Those replies are recognised on their way out — a 4xx/5xx
//!   head with `content-length: 0`, which no route of the service ever sends — and replaced by
//!   the same `{"error": {"code", "message"}}` body every other error has, with fixed texts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Handlers running on one connection; the idle clock stops while there are any.
#[derive(Debug, Clone, Default)]
pub struct Busy(Arc<AtomicUsize>);

impl Busy {
    /// Marks a handler as running until the guard is dropped (also when it is cancelled).
    pub fn enter(&self) -> BusyGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// See [`Busy::enter`].
pub struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client connection with an idle deadline and rewritten protocol-error replies. `S` is the
/// TCP stream, or the TLS session over it: this sits above TLS, where hyper's bytes are plain.
pub struct ConnIo<S = TcpStream> {
    inner: S,
    busy: Busy,
    idle_timeout: Duration,
    /// Armed when an operation first has to wait; any byte moved disarms it.
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    /// A replacement reply still being sent, and how much of it has gone.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnIo<S> {
    pub fn new(inner: S, busy: Busy, idle_timeout: Duration) -> Self {
        ConnIo {
            inner,
            busy,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
            armed: false,
            pending: None,
        }
    }

    /// Called when the socket is not ready: starts the idle clock if it is not running and
    /// fails once it has run out. Polling the timer registers the waker, so the task wakes up
    /// at the deadline even if the peer never sends anything.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.busy.any() {
            // Hyper watches the socket for a close while the handler works; not the client's
            // idleness. The clock starts afresh once the handler is done.
            self.armed = false;
            return Poll::Pending;
        }
        if !self.armed {
            self.armed = true;
            let at = Instant::now() + self.idle_timeout;
            self.deadline.as_mut().reset(at);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for longer than the idle timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Sends what is left of a replacement reply.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = self.pending.as_mut() {
            if *sent >= bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *sent += n;
                    self.armed = false;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match self.waiting(cx) {
                        Poll::Ready(e) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => match this.waiting(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.poll_pending(cx)) {
            return Poll::Ready(Err(e));
        }
        if let Some(reply) = protocol_error_reply(buf) {
            // The whole automatic reply is taken as written (so hyper never offers it again);
            // the replacement goes instead, finished by later writes or the flush.
            this.pending = Some((reply, 0));
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => match this.waiting(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.poll_pending(cx)) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.poll_pending(cx)) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    /// Not vectored, so hyper hands over each response head in one contiguous buffer, which is
    /// what [`protocol_error_reply`] inspects.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// If `buf` starts with one of hyper's automatic error replies (a 4xx/5xx head with an empty
/// body), the JSON reply to send instead.
pub fn protocol_error_reply(buf: &[u8]) -> Option<Vec<u8>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    let empty = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("content-length") && v.trim() == "0"
        })
    });
    if !empty {
        return None;
    }
    let (code, message) = match status {
        414 => ("uri_too_long", "the request target is too long"),
        431 => (
            "headers_too_large",
            "the request header block is over the size limit",
        ),
        _ => ("bad_request", "the request is not valid HTTP/1.1"),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let reason = status_line.splitn(3, ' ').nth(2).unwrap_or("Error");
    Some(
        format!(
            "{version} {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_hypers_empty_error_heads_only() {
        let auto =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let reply = String::from_utf8(protocol_error_reply(auto).unwrap()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(reply.contains("content-type: application/json"));
        assert!(reply.ends_with(r#"{"error":{"code":"headers_too_large","message":"the request header block is over the size limit"}}"#));
        let len: usize = reply
            .split("content-length: ")
            .nth(1)
            .and_then(|r| r.split("\r\n").next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, reply.split("\r\n\r\n").nth(1).unwrap().len());

        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(protocol_error_reply(ok).is_none());
        let json_error = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n{}";
        assert!(protocol_error_reply(json_error).is_none());
        assert!(protocol_error_reply(b"HTTP/1.1 400 Bad Request\r\ncontent-len").is_none());
        assert!(protocol_error_reply(b"{\"error\": 1}\r\n\r\n").is_none());
    }
}
