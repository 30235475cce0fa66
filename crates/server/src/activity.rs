//! What one connection is doing, for the deadlines hyper's HTTP/1 server
//! does not keep apart: a request's head must arrive within the header
//! timeout (counted from the connection's opening, or from the first byte of
//! a later request), and a kept-alive connection may wait for its next
//! request for the idle timeout. While a request is answered no deadline
//! runs here: its body has its own (see [`crate::body_deadline`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request's head; `heard` once a byte of it has arrived.
    Head { since: Instant, heard: bool },
    /// Between requests, nothing of the next one received.
    Idle { since: Instant },
    /// A request is being answered; `heard` once a byte of the next has arrived.
    Busy { heard: bool },
}

/// The phase of one connection and its deadlines.
#[derive(Debug)]
pub(crate) struct Activity {
    phase: Mutex<Phase>,
    /// Woken when the deadline may have moved earlier.
    pub(crate) changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Activity {
    /// A connection just opened: its first request's head is awaited.
    pub(crate) fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Activity> {
        Arc::new(Activity {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
                heard: false,
            }),
            changed: Notify::new(),
            header_timeout,
            idle_timeout,
        })
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The phase is plain data, whole after any panic.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the connection is to be closed, if nothing changes before.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Head { since, .. } => Some(since + self.header_timeout),
            Phase::Idle { since } => Some(since + self.idle_timeout),
            Phase::Busy { .. } => None,
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.deadline().is_some_and(|d| d <= Instant::now())
    }

    /// Whether closing now loses nothing a client sent: no request in hand or begun.
    pub(crate) fn quiet(&self) -> bool {
        matches!(
            *self.phase(),
            Phase::Idle { .. } | Phase::Head { heard: false, .. }
        )
    }

    /// Bytes arrived: an idle connection starts a request's head.
    fn received(&self) {
        let mut phase = self.phase();
        match *phase {
            Phase::Idle { .. } => {
                *phase = Phase::Head {
                    since: Instant::now(),
                    heard: true,
                };
                drop(phase);
                self.changed.notify_one();
            }
            Phase::Head {
                since,
                heard: false,
            } => *phase = Phase::Head { since, heard: true },
            Phase::Busy { heard: false } => *phase = Phase::Busy { heard: true },
            Phase::Head { heard: true, .. } | Phase::Busy { heard: true } => {}
        }
    }

    /// A request's head has been read: it is being answered.
    pub(crate) fn request_started(self: &Arc<Self>) -> Answering {
        *self.phase() = Phase::Busy { heard: false };
        Answering(self.clone())
    }

    fn answered(&self) {
        let mut phase = self.phase();
        let now = Instant::now();
        // Bytes that came in meanwhile are the next request's head (pipelined).
        *phase = match *phase {
            Phase::Busy { heard: true } => Phase::Head {
                since: now,
                heard: true,
            },
            _ => Phase::Idle { since: now },
        };
        drop(phase);
        self.changed.notify_one();
    }
}

/// Held while a request is answered (moved into its response's body, which
/// hyper drops once the response is sent); its drop starts the idle wait.
#[derive(Debug)]
pub(crate) struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answered();
    }
}

/// A connection's stream, telling its [`Activity`] when bytes arrive.
pub(crate) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

    /// Whether `deadline` is `timeout` after some moment in `[before, after]`.
    fn within(
        deadline: Option<Instant>,
        before: Instant,
        after: Instant,
        timeout: Duration,
    ) -> bool {
        deadline.is_some_and(|d| d >= before + timeout && d <= after + timeout)
    }

    #[test]
    fn deadlines_follow_the_phases() {
        let header = Duration::from_secs(10);
        let idle = Duration::from_secs(75);
        let before = Instant::now();
        let activity = Activity::new(header, idle);
        let opened = activity.deadline();
        assert!(within(opened, before, Instant::now(), header));
        assert!(activity.quiet());
        std::thread::sleep(Duration::from_millis(20));
        // Trickled bytes of the head don't move its deadline.
        activity.received();
        assert_eq!(activity.deadline(), opened);
        assert!(!activity.quiet());
        let answering = activity.request_started();
        assert_eq!(activity.deadline(), None);
        assert!(!activity.quiet());
        let before = Instant::now();
        drop(answering);
        assert!(within(activity.deadline(), before, Instant::now(), idle));
        assert!(activity.quiet());
        let before = Instant::now();
        activity.received();
        assert!(within(activity.deadline(), before, Instant::now(), header));
        assert!(!activity.expired());
    }

    #[test]
    fn a_pipelined_request_is_a_head_not_an_idle_wait() {
        let header = Duration::from_secs(10);
        let activity = Activity::new(header, Duration::from_secs(75));
        let answering = activity.request_started();
        activity.received();
        let before = Instant::now();
        drop(answering);
        assert!(within(activity.deadline(), before, Instant::now(), header));
        assert!(!activity.quiet());
    }
}
