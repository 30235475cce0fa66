//! A deadline on reading a request's body, so that a client trickling its
//! body a byte at a time is cut off instead of holding its connection (and a
//! handler) for ever. The body has the body timeout from its request's head,
//! and each chunk that arrives earns more time at [`EARNING_RATE`], so an
//! upload of any size at a reasonable speed is never cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use tokio::time::{Instant, Sleep};

/// Bytes a second that keep a body's deadline moving: a body arriving this
/// fast or faster is never cut.
pub const EARNING_RATE: f64 = 64.0 * 1024.0;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body took too long to arrive")]
    TimedOut,
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// A request body that fails with [`BodyError::TimedOut`] once its deadline passes.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    sleep: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    /// `inner` must arrive within `timeout` from now, plus what its chunks
    /// earn; `timed_out` is set when it does not.
    pub fn new(inner: Incoming, timeout: Duration, timed_out: Arc<AtomicBool>) -> DeadlineBody {
        let deadline = Instant::now() + timeout;
        DeadlineBody {
            inner,
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timed_out,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyError::TimedOut)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let earned = Duration::from_secs_f64(data.len() as f64 / EARNING_RATE);
                    let deadline = self.deadline + earned;
                    self.deadline = deadline;
                    self.sleep.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyError::TimedOut)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
