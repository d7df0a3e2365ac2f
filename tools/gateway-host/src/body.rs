//! [`Capped`]: a body passed through frame by frame, cut off past
//! `SESSION_MAX_BODY_BYTES`, that tells when it is over.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

/// A boxed error, as hyper takes them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A body streamed through untouched, frame by frame, with three additions:
///
/// - a byte limit (`SESSION_MAX_BODY_BYTES`): past it the stream ends with a
///   [`BodyTooLarge`] error instead of the next frame, so an upload is
///   aborted (the origin sees a cut-off request) and a download is cut off
///   (the client sees a truncated response). Bodies with a `Content-Length`
///   over the limit never get this far: the gateway refuses them by their
///   head.
/// - an end signal: the sender given to [`Capped::until_end`] is dropped
///   once the body has ended (its last frame read, an error, or the body
///   dropped), which starts the origin's response-head timeout.
/// - the rest of a body cut off at the limit goes to the sender given to
///   [`Capped::rest_to`] (the host reads a client's upload to its end, or a
///   while, so that the client reads its `413`).
#[derive(Debug)]
pub struct Capped<B> {
    /// `None` once handed over by [`Capped::rest_to`].
    inner: Option<B>,
    limit: Option<u64>,
    seen: u64,
    direction: Direction,
    end: Option<oneshot::Sender<()>>,
    rest: Option<oneshot::Sender<B>>,
}

impl<B: Body> Capped<B> {
    /// `inner`, going `direction`, with at most `limit` bytes (no limit
    /// with `None`).
    pub fn new(inner: B, limit: Option<u64>, direction: Direction) -> Self {
        Self {
            inner: Some(inner),
            limit,
            seen: 0,
            direction,
            end: None,
            rest: None,
        }
    }

    /// Drops `end` once the body is over (at once if it is already).
    #[must_use]
    pub fn until_end(mut self, end: oneshot::Sender<()>) -> Self {
        if !self.inner.as_ref().is_none_or(Body::is_end_stream) {
            self.end = Some(end);
        }
        self
    }

    /// Sends the inner body, what is left of it, to `rest` when it goes over
    /// the limit (instead of dropping it with this body).
    #[must_use]
    pub fn rest_to(mut self, rest: oneshot::Sender<B>) -> Self {
        self.rest = Some(rest);
        self
    }

    /// The data bytes passed through so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }
}

impl<B> Body for Capped<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
            None => {
                this.end = None;
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                this.end = None;
                let e = e.into();
                let (what, seen) = (this.direction.what(), this.seen);
                match this.direction {
                    Direction::Upload => {
                        log::debug!("edge-session-host: the {what} failed after {seen} bytes: {e}");
                    }
                    Direction::Download => log::warn!(
                        "edge-session-host: the {what} failed after {seen} bytes, the client's response is cut off: {e}"
                    ),
                }
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            this.seen = this.seen.saturating_add(data.remaining() as u64);
            if let Some(limit) = this.limit
                && this.seen > limit
            {
                this.end = None;
                if let (Some(rest), Some(inner)) = (this.rest.take(), this.inner.take()) {
                    let _ = rest.send(inner);
                }
                let error = BodyTooLarge {
                    what: this.direction.what(),
                    limit,
                };
                match this.direction {
                    Direction::Upload => log::info!("edge-session-host: {error}: upload aborted"),
                    Direction::Download => log::warn!("edge-session-host: {error}: cut off"),
                }
                return Poll::Ready(Some(Err(Box::new(error))));
            }
        }
        if this.is_end_stream() {
            this.end = None;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Which way a [`Capped`] body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client's request body, to the origin.
    Upload,
    /// The origin's response body, to the client.
    Download,
}

impl Direction {
    /// The body's name in errors and logs.
    pub fn what(self) -> &'static str {
        match self {
            Direction::Upload => "request body",
            Direction::Download => "origin response body",
        }
    }
}

/// A streamed body went over `SESSION_MAX_BODY_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    /// Which body ("request body", "origin response body").
    pub what: &'static str,
    /// The limit, in bytes.
    pub limit: u64,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} is over the limit of {} bytes (SESSION_MAX_BODY_BYTES)",
            self.what, self.limit
        )
    }
}

impl StdError for BodyTooLarge {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::VecDeque;
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::BodyExt as _;

    use super::*;

    /// A body of chunks of these sizes, which knows when it is over.
    struct Chunks(VecDeque<Bytes>);

    fn chunks(sizes: &[usize]) -> Chunks {
        Chunks(sizes.iter().map(|n| Bytes::from(vec![7u8; *n])).collect())
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    #[tokio::test]
    async fn passes_a_body_within_the_limit_and_signals_its_end() {
        let (tx, mut rx) = oneshot::channel();
        let mut body = Capped::new(chunks(&[3, 4]), Some(7), Direction::Upload).until_end(tx);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 3);
        assert!(rx.try_recv().is_err(), "not over after the first chunk");
        let second = body.frame().await.unwrap().unwrap();
        assert_eq!(second.into_data().unwrap().len(), 4);
        // Over with its last chunk: no need to poll for the end.
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert_eq!(body.bytes_seen(), 7);
    }

    #[tokio::test]
    async fn an_empty_body_is_over_at_once() {
        let (tx, mut rx) = oneshot::channel();
        let _body = Capped::new(chunks(&[]), None, Direction::Upload).until_end(tx);
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    #[tokio::test]
    async fn cuts_the_stream_off_past_the_limit() {
        let (tx, mut rx) = oneshot::channel();
        let body = Capped::new(chunks(&[4, 4, 4]), Some(6), Direction::Upload).until_end(tx);
        let (rest, mut left) = oneshot::channel();
        let body = body.rest_to(rest);
        let error = body.collect().await.unwrap_err();
        let too_large = error.downcast_ref::<BodyTooLarge>().unwrap();
        assert_eq!(too_large.limit, 6);
        assert!(error.to_string().contains("request body"), "{error}");
        assert!(rx.try_recv().is_err());
        // The third chunk was not read: it is in the rest.
        let rest = left.try_recv().unwrap();
        assert_eq!(rest.collect().await.unwrap().to_bytes().len(), 4);
    }

    #[tokio::test]
    async fn no_limit_passes_everything() {
        let body = Capped::new(chunks(&[1000; 100]), None, Direction::Download);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 100_000);
    }
}
