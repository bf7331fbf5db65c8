//! The HTTP/1 server loop of every listener (the API, `HERALD_METRICS_ADDR`
//! and `herald listen`), in place of `axum::serve`, which cannot set the
//! limits a public server needs:
//!
//! - a request's head must arrive within `HERALD_HTTP_HEADER_TIMEOUT` (hyper's
//!   `header_read_timeout`; hyper starts that clock when it begins waiting for
//!   a request, so it also bounds a kept-alive connection between requests);
//! - a connection with no request in progress on which no byte has moved for
//!   `HERALD_HTTP_IDLE_TIMEOUT` is closed (hyper has no such timeout; it also
//!   covers a client that stops reading its response);
//! - at most `HERALD_HTTP_MAX_CONNECTIONS` connections are open at once: at
//!   the cap the loop stops accepting, and the kernel's backlog holds the rest.
//!
//! The body-read deadline belongs to the router (`herald_api`), where the body
//! is read and a 408 can be answered in Herald's error shape. On `shutdown`
//! the loop stops accepting, idle connections close, and requests in flight
//! finish, as `axum::serve`'s graceful shutdown did.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The connection limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time to receive a request's head (request line and headers).
    pub header_timeout: Duration,
    /// Time a connection may sit with no request in progress and no byte moving.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// How often, at most, reaching the connection cap is logged.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` until `shutdown` is cancelled and every
/// connection has finished.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut last_cap_warning: Option<Instant> = None;
    loop {
        if permits.available_permits() == 0
            && last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL)
        {
            last_cap_warning = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; new connections wait in the listen backlog (HERALD_HTTP_MAX_CONNECTIONS)"
            );
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        // axum's `Listener` retries failed accepts (after a pause when out of
        // file descriptors), so this loop never ends on one.
        let (stream, _remote) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = shutdown.cancelled() => break,
        };
        let connection = serve_connection(stream, app.clone(), limits, graceful.watcher());
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves one connection until it ends, fails a limit, or is shut down.
fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    watcher: Watcher,
) -> impl std::future::Future<Output = ()> + Send {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_progress = activity.request_started();
            let response = app.clone().oneshot(request);
            async move {
                let response = response.await;
                drop(in_progress);
                response
            }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    let connection = watcher.watch(connection);
    async move {
        tokio::select! {
            result = connection => {
                if let Err(error) = result {
                    // A header timeout, a malformed request, a client gone.
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            () = activity.idle_for(limits.idle_timeout) => {
                // Dropping the connection closes the socket; no request is in progress.
                tracing::debug!("closing an idle connection");
            }
        }
    }
}

/// What a connection has been doing: shared by its socket, which notes when
/// bytes move, and its service, which counts requests in progress.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` when a byte last moved or a request ended.
    last_active_ms: AtomicU64,
    requests_in_progress: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            requests_in_progress: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }

    fn request_started(self: &Arc<Self>) -> RequestInProgress {
        self.requests_in_progress.fetch_add(1, Ordering::SeqCst);
        RequestInProgress(self.clone())
    }

    /// Resolves once no request has been in progress and no byte has moved
    /// for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let now = Instant::now();
            let due = self.last_active() + limit;
            let busy = self.requests_in_progress.load(Ordering::SeqCst) > 0;
            if !busy && now >= due {
                return;
            }
            // A request that ends touches the clock, so while one is in
            // progress it is enough to look again a whole `limit` later.
            let next = if busy { now + limit } else { due };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// A request being handled; the connection is not idle until it is dropped.
struct RequestInProgress(Arc<Activity>);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        // The clock first, so the count never reads zero with a stale clock.
        self.0.touch();
        self.0.requests_in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A socket that notes on its [`Activity`] every read or write that moves bytes.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> Tracked<T> {
    fn noted(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.noted(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.noted(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_no_request_in_progress() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_secs(60);

        let request = activity.request_started();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move {
                activity.idle_for(limit).await;
                Instant::now()
            }
        });
        // A request running for five limits is not idleness.
        tokio::time::sleep(limit * 5).await;
        assert!(!idle.is_finished());
        let ended = Instant::now();
        drop(request);

        // Bytes moving keep it open too.
        tokio::time::sleep(limit / 2).await;
        activity.touch();
        let last_byte = Instant::now();
        let closed_at = idle.await.expect("the idle watch ends");
        assert!(closed_at >= last_byte + limit, "closed too early");
        assert!(closed_at < ended + limit * 2, "closed long after the limit");
    }
}
