//! The accept loop of an environment's own listeners (its Runtime API and its platform
//! API endpoint) and the limits it keeps.
//!
//! Owns what one environment's connections may cost the server: at most
//! `max_connections` at once (further ones are closed as soon as they are accepted, never
//! queued), a request head within `header_timeout` of the connection waiting for one,
//! heads of at most `max_buf` bytes, and a pause after a failed `accept` instead of a
//! spin. On the host's loopback each connection is admitted by a [`PeerCheck`] first.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::peer::PeerCheck;

/// Pause after a failed `accept` (no file descriptor left, ...), so that a listener whose
/// pending connection cannot be taken does not spin a worker.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What one listener of an environment allows.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// A request head must arrive within this long of the connection waiting for one
    /// (new, or idle after a response); else the connection is closed.
    pub header_timeout: Duration,
    /// Read buffer limit of a connection (request line and headers).
    pub max_buf: usize,
}

/// Serves `listener` within `limits`, handing each connection to `connection`; each is
/// admitted by `peers` first when it is given (a listener on the host's loopback, where
/// any local process could connect). `what` names the listener in logs. Runs until
/// aborted; aborting it ends every connection.
pub async fn serve<F, Fut>(
    listener: tokio::net::TcpListener,
    limits: ListenerLimits,
    peers: Option<Arc<PeerCheck>>,
    env: Arc<str>,
    what: &'static str,
    connection: F,
) where
    F: Fn(tokio::net::TcpStream) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut over_cap: u64 = 0;
    let mut accept_failing = false;
    // Connection tasks live in the set, so aborting this task ends them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => {
                        accept_failing = false;
                        accepted
                    }
                    Err(error) => {
                        if !accept_failing {
                            tracing::warn!(env = %env, %error, "{what} accept failed; retrying after a pause");
                            accept_failing = true;
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Closed at once: the function holds every slot already.
                    drop(stream);
                    if over_cap == 0 {
                        tracing::warn!(env = %env, limit = limits.max_connections, "{what} connection limit reached; closing further connections");
                    }
                    over_cap += 1;
                    continue;
                };
                let peers = peers.clone();
                let env = env.clone();
                let connection = connection.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    if let Some(peers) = peers {
                        let local = match stream.local_addr() {
                            Ok(local) => local,
                            Err(_) => return,
                        };
                        let checked_at = Instant::now();
                        let verdict = tokio::task::spawn_blocking(move || peers.check(local, peer)).await;
                        match verdict {
                            Ok(Ok(verdict)) if verdict.admitted() => {
                                tracing::debug!(env = %env, peer_port = peer.port(), ?verdict, check_us = checked_at.elapsed().as_micros() as u64, "admitted a {what} connection");
                            }
                            Ok(Ok(verdict)) => {
                                tracing::warn!(env = %env, peer_port = peer.port(), ?verdict, "refused a {what} connection from outside the environment");
                                return;
                            }
                            Ok(Err(error)) => {
                                tracing::warn!(env = %env, peer_port = peer.port(), %error, "refused a {what} connection whose peer could not be identified");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    let _ = stream.set_nodelay(true);
                    connection(stream).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A connection handler that serves `service` with hyper, within `limits` (a head within
/// `header_timeout` of the connection waiting for one, at most `max_buf` bytes).
pub fn hyper_connections<S, B>(
    limits: ListenerLimits,
    service: S,
) -> impl Fn(tokio::net::TcpStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
+ Clone
+ Send
+ 'static
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |stream| {
        let service = service.clone();
        Box::pin(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_buf)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        })
    }
}
