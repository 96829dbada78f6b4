//! The accept loop: every resource a client can hold is bounded.
//!
//! `axum::serve` accepts without limit and waits for every connection on shutdown, so a few
//! hundred silent sockets lock everyone out and one half-sent request holds the process after
//! SIGTERM. This loop serves the same router through hyper directly, with:
//!
//! - a **connection cap**: past `max_connections` open connections, a new one gets a fixed 503
//!   JSON reply and is closed at once, so the listener's backlog keeps draining and file
//!   descriptors stay below the process limit (with TLS it is closed without a reply: a TLS
//!   client cannot read plain text, and a handshake just to refuse would cost the CPU the cap
//!   protects);
//! - a **header timeout** (hyper's): a request head must arrive within it, counted from when the
//!   connection starts waiting for one — which also closes idle keep-alive connections. With
//!   TLS ([`crate::serve::tls`]) the handshake must complete within the same timeout first (a
//!   client that opens TCP and never finishes its ClientHello is dropped then), and it runs
//!   inside the connection's slot, so handshakes in progress count against the cap;
//! - an **idle timeout** ([`ConnIo`]): no byte moving in either direction for that long closes
//!   the connection (a peer that stops reading its responses, or stops sending);
//! - the **body timeout** is the handlers' (they read bodies only after authentication);
//! - a **shutdown deadline**: on shutdown the listener closes, idle connections close, requests
//!   in progress may finish; whatever is still open at the deadline is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;

use crate::serve::conn_io::{Busy, ConnIo};
use crate::serve::metrics::Metrics;
use crate::serve::tls::{self, HandshakeFailure, TlsState};

/// Largest request head (request line and headers) read into memory; a longer one is
/// answered 431. Real requests carry a few hundred bytes of headers.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Per-connection limits (`--http-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request head must arrive within this; also the longest keep-alive idle time.
    pub header_timeout: Duration,
    /// A request body must arrive completely within this (enforced by the handlers).
    pub body_timeout: Duration,
    /// No byte moved in either direction for this long closes the connection.
    pub idle_timeout: Duration,
    /// Open connections beyond this are refused.
    pub max_connections: usize,
    /// How long shutdown waits for open connections before dropping them.
    pub shutdown_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 512,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The peer of a request, put into its extensions for per-client limits.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// What an over-the-cap connection is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 85\r\nconnection: close\r\nretry-after: 1\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"connection limit reached; retry\"}}";

/// Serves `app` on `listener` until `shutdown` resolves, then drains within the deadline. With
/// `tls`, every connection is a TLS session using the configuration in force when it was
/// accepted.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    tls: Option<Arc<TlsState>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning; connections closing
                    // will free descriptors.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused();
            if tls.is_none() {
                refuse(stream);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, metrics, drain) = (app.clone(), metrics.clone(), drain_rx.clone());
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        conns.spawn(async move {
            metrics.connection_opened();
            match acceptor {
                None => connection(stream, peer, app, limits, drain).await,
                Some(acceptor) => {
                    secure_connection(stream, peer, acceptor, app, limits, &metrics, drain).await
                }
            }
            metrics.connection_closed();
            drop(slot);
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let open = conns.len();
    if open > 0 {
        tracing::info!(connections = open, "draining open connections");
    }
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            deadline_ms = limits.shutdown_timeout.as_millis() as u64,
            "shutdown deadline passed; closing the remaining connections"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Tells an over-the-cap client why, without waiting on it, and closes.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
}

/// Completes the TLS handshake within the header timeout (or until shutdown begins), then
/// serves the session like a plain connection. A failed handshake is counted and logged at
/// debug level (scanners and health checkers of other protocols are routine); it never reaches
/// the router, so it can be neither a 5xx nor an audit record.
async fn secure_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    limits: HttpLimits,
    metrics: &Metrics,
    mut drain: watch::Receiver<bool>,
) {
    let failed = |failure: HandshakeFailure, detail: &str| {
        metrics.tls_handshake_failed(failure.as_str());
        tracing::debug!(peer = %peer, reason = failure.as_str(), error = %detail, "TLS handshake failed");
    };
    let handshake =
        tokio::time::timeout(limits.header_timeout, tls::accept(stream, acceptor, failed));
    let session = tokio::select! {
        r = handshake => match r {
            Ok(Some(session)) => session,
            Ok(None) => return,
            Err(_) => {
                failed(HandshakeFailure::Timeout, "not completed within the header timeout");
                return;
            }
        },
        // Shutting down: a session not yet established is not worth finishing.
        _ = drain.changed() => return,
    };
    connection(session, peer, app, limits, drain).await
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = Busy::default();
    let io = TokioIo::new(ConnIo::new(stream, busy.clone(), limits.idle_timeout));
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        let mut app = app.clone();
        let working = busy.enter();
        async move {
            let response = app.call(req).await;
            drop(working);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES.max(64 * 1024))
        .writev(false)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = drain.changed() => {
            // Idle connections close now; a request in progress finishes (within the
            // shutdown deadline) and its connection closes after the response.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection closed with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reply_is_well_formed_json() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
