//! Serving HTTP to whoever can connect, within bounds. A connection that
//! makes no progress for [`IDLE`], or is still open after [`LIFETIME`], is
//! closed; at most a quarter of the process's descriptors are held by
//! connections at once, so held or half-sent ones can neither freeze a
//! server nor take the descriptors the daemon needs for the API and the
//! ledger. Connections beyond the cap wait in the kernel's backlog.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The longest a connection may send or take nothing: a request's headers
/// and body, a keep-alive pause, a reader that stopped reading.
pub const IDLE: Duration = Duration::from_secs(15);
/// The longest any connection stays open, however slowly it trickles.
pub const LIFETIME: Duration = Duration::from_secs(60);
/// Connections open at once, when the descriptor limit cannot be read.
const CAP_UNKNOWN_LIMIT: usize = 64;

/// A TCP listener whose connections are bounded in time and number.
pub struct Bounded {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
    lifetime: Duration,
}

impl Bounded {
    /// [`IDLE`], [`LIFETIME`], and a cap of a quarter of the descriptor limit.
    pub fn new(listener: TcpListener) -> Self {
        Self::with_limits(listener, default_cap(), IDLE, LIFETIME)
    }

    pub fn with_limits(listener: TcpListener, cap: usize, idle: Duration, lifetime: Duration) -> Self {
        Self { listener, permits: Arc::new(Semaphore::new(cap.max(1))), idle, lifetime }
    }
}

/// A quarter of the soft descriptor limit, between 8 and 256: the rest is
/// for API connections, signal reads, the ledger's pool and files.
fn default_cap() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !read || limit.rlim_cur == libc::RLIM_INFINITY {
        return CAP_UNKNOWN_LIMIT;
    }
    usize::try_from(limit.rlim_cur / 4).unwrap_or(usize::MAX).clamp(8, 256)
}

impl axum::serve::Listener for Bounded {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        let permit = Arc::clone(&self.permits).acquire_owned().await.expect("the semaphore is never closed");
        // Accept errors (a full descriptor table) are logged and retried there.
        let (stream, address) = axum::serve::Listener::accept(&mut self.listener).await;
        let now = Instant::now();
        let guarded = Guarded {
            stream,
            _permit: permit,
            idle: self.idle,
            quiet: Box::pin(tokio::time::sleep_until(now + self.idle)),
            end: Box::pin(tokio::time::sleep_until(now + self.lifetime)),
        };
        (guarded, address)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// One accepted connection: its I/O fails with `TimedOut` once it has been
/// quiet for too long or open for too long, and the server then drops it.
pub struct Guarded {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    quiet: Pin<Box<Sleep>>,
    end: Pin<Box<Sleep>>,
}

impl Guarded {
    fn progressed(&mut self) {
        let idle = self.idle;
        self.quiet.as_mut().reset(Instant::now() + idle);
    }

    /// Called when the stream would wait: registers both deadlines' wakers.
    fn overdue(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.end.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connection open too long"));
        }
        if self.quiet.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle too long"));
        }
        Ok(())
    }

    fn outcome<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>, moved: bool) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                if moved {
                    self.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.overdue(cx)?;
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        self.outcome(cx, poll, moved)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        let moved = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        self.outcome(cx, poll, moved)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.outcome(cx, poll, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        let moved = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        self.outcome(cx, poll, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
