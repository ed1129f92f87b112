//! The API's HTTP front: the accept loop and the life of each connection.
//!
//! Owns what a client can hold before (or between) requests: a connection must deliver
//! a request's headers within the header timeout (counted from the connection, or from
//! the first byte of a later request), may wait idle for its next request at most the
//! idle timeout, and may send at most `max_header_bytes` of request line and headers
//! (hyper answers 431 past that). At most `max_connections` are open at once: further
//! ones get an immediate 429 in Lambda's format and are closed, so a flood of
//! connections costs new connections only, never the server. Errors of `accept` (such as
//! running out of file descriptors) back off instead of spinning.
//!
//! Shutdown: when the shutdown future completes the loop stops accepting, every
//! connection is asked to finish (idle ones close at once, in-flight requests complete),
//! and [`serve`] returns once they all have.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::ApiError;

/// What one connection may hold, and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
}

/// The longest pause after a failed `accept`.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The first pause after a failed `accept`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Refusals of connections over the cap are logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(5);

/// The smallest header limit hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// The connection cap that fits `requested` into the process's open-file limit: at most
/// half of it, the other half being left to environments, the store and the logs.
pub fn fit_connection_cap(requested: usize, open_files_limit: Option<u64>) -> usize {
    let requested = requested.max(1);
    match open_files_limit {
        Some(limit) => requested.min((limit / 2).max(1) as usize),
        None => requested,
    }
}

/// The soft limit of open files of this process (from `/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `app` on `listener` until `shutdown` completes and every connection has
/// finished.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .keep_alive(true)
        // Header and idle timeouts are kept by `connection`, which tells them apart.
        .header_read_timeout(None);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusal = Arc::<[u8]>::from(connection_refusal());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once they are all gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut refused = 0u64;
    let mut refusal_logged: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    stream
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: pause and let connections close.
                    tracing::warn!(error = %e, pause = ?backoff, "accepting API connections failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(&stream, &refusal);
            refused += 1;
            if refusal_logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused,
                    "API connection refused: too many open connections"
                );
                refusal_logged = Some(Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let http = http.clone();
        let app = app.clone();
        let stop = stop_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            connection(stream, app, http, limits, stop).await;
            drop(permit);
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    Ok(())
}

/// Accept errors that concern one connection only (it went away before it was taken).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The bytes sent on a connection over the cap: a 429 in Lambda's format.
fn connection_refusal() -> Vec<u8> {
    ApiError::TooManyRequests {
        reason: "CallerRateLimitExceeded",
        message: "The server has too many open connections; retry later.".into(),
    }
    .http1_close_response()
}

/// Answers a connection over the cap without waiting for it: what fits in the socket
/// buffer is written, what the client already sent is discarded (so that closing does
/// not reset the connection before the answer is read), and the socket is closed.
fn refuse(stream: &TcpStream, answer: &[u8]) {
    let mut scratch = [0u8; 4096];
    for _ in 0..4 {
        match stream.try_read(&mut scratch) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let _ = stream.try_write(answer);
}

/// Serves one connection, closing it when a timeout of `limits` passes or when the
/// server stops (after its request in flight, if any).
async fn connection(
    stream: TcpStream,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let peer = stream.peer_addr().ok();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let tower = TowerToHyperService::new(app);
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let in_flight = tracked.request_started();
        let response = hyper::service::Service::call(&tower, request);
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    });
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "API connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if let Some(why) = activity.expired(&limits, Instant::now()) {
                    tracing::debug!(why, "closing an API connection");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// "Not set" for the times of [`Activity`].
const NEVER: u64 = u64::MAX;

/// What a connection is doing, for its timeouts. Times are milliseconds since `origin`.
struct Activity {
    origin: Instant,
    /// Requests whose response is not yet produced.
    in_flight: AtomicUsize,
    /// Requests served so far.
    served: AtomicU64,
    /// First byte of a request whose headers are not complete yet (NEVER: none).
    head_started: AtomicU64,
    /// When the last response was produced.
    idle_since: AtomicU64,
    /// When a byte was last written.
    last_write: AtomicU64,
    /// Woken when a deadline may have moved.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            head_started: AtomicU64::new(NEVER),
            idle_since: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    fn at(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.origin).as_millis() as u64
    }

    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .head_started
                .compare_exchange(NEVER, self.now(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_write.store(self.now(), Ordering::Release);
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NEVER, Ordering::Release);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// When the connection is due to be closed, `None` while a request is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Acquire);
        let (since, allowed) = if head != NEVER {
            (head, limits.header_timeout)
        } else if self.served.load(Ordering::Acquire) == 0 {
            (0, limits.header_timeout)
        } else {
            let since = self
                .idle_since
                .load(Ordering::Acquire)
                .max(self.last_write.load(Ordering::Acquire));
            (since, limits.idle_timeout)
        };
        Some(self.origin + Duration::from_millis(since) + allowed)
    }

    /// Why the connection is to be closed at `now`, if it is.
    fn expired(&self, limits: &ConnectionLimits, now: Instant) -> Option<&'static str> {
        let deadline = self.deadline(limits)?;
        if now < deadline {
            return None;
        }
        let waiting_for_headers = self.head_started.load(Ordering::Acquire) != NEVER
            || self.served.load(Ordering::Acquire) == 0;
        Some(if waiting_for_headers {
            "request headers not received within the header timeout"
        } else {
            "idle past the idle timeout"
        })
    }
}

/// A request in flight on a connection; dropping it marks the connection idle.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::Release);
        activity.served.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        activity.changed.notify_one();
    }
}

/// A socket that reports its reads and writes to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 8,
        }
    }

    #[test]
    fn connection_cap_fits_the_open_file_limit() {
        assert_eq!(fit_connection_cap(4096, Some(20_000)), 4096);
        assert_eq!(fit_connection_cap(4096, Some(1024)), 512);
        assert_eq!(fit_connection_cap(0, None), 1);
        assert_eq!(fit_connection_cap(10, Some(1)), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_the_header_timeout_then_the_idle_timeout() {
        let activity = Arc::new(Activity::new());
        let start = activity.origin;
        let limits = limits();
        assert_eq!(
            activity.deadline(&limits),
            Some(start + limits.header_timeout)
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(activity.expired(&limits, Instant::now()).is_some());

        let request = activity.request_started();
        assert_eq!(activity.deadline(&limits), None, "no deadline in flight");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(activity.expired(&limits, Instant::now()).is_none());
        drop(request);
        let idle = activity.deadline(&limits).unwrap();
        assert_eq!(idle, Instant::now() + limits.idle_timeout);

        // The first byte of the next request switches to the header timeout.
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.read();
        assert_eq!(
            activity.deadline(&limits),
            Some(Instant::now() + limits.header_timeout)
        );
        assert_eq!(
            activity.expired(&limits, Instant::now() + limits.header_timeout),
            Some("request headers not received within the header timeout")
        );
    }

    #[test]
    fn the_refusal_is_a_complete_lambda_error() {
        let text = String::from_utf8(connection_refusal()).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
        assert!(text.contains("\r\nx-amzn-errortype: TooManyRequestsException\r\n"));
        assert!(text.contains("\r\nconnection: close\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["Reason"], "CallerRateLimitExceeded");
    }
}
