//! Streamed responses (`SESSION_LAMBDA_STREAMING=true`): what the runtime
//! sends through `InvokeWithResponseStream` to a Function URL with `InvokeMode:
//! RESPONSE_STREAM` or a REST API integration with `ResponseTransferMode:
//! STREAM`.
//!
//! A [`StreamResponse`] is a metadata prelude (status, headers, cookies),
//! which `lambda_runtime` sends as JSON followed by 8 NUL bytes, then the
//! body's chunks as they arrive. In the prelude:
//!
//! - every `Set-Cookie` value goes into `cookies` (one `Set-Cookie` header
//!   each for the client);
//! - every other header is one string: the values of a repeated header are
//!   joined with `, ` (the platforms document string values; a JSON array
//!   would not be understood); values that are not UTF-8 are dropped, with a
//!   warning;
//! - `Content-Length` is left out: the platform frames the stream itself
//!   (chunked), and a length it did not count could contradict it.
//!
//! The body is the origin's own, chunk for chunk ([`ResponseStream`]). If it
//! fails midway (the origin dies, or `SESSION_MAX_BODY_BYTES` cuts it off)
//! the stream ends there: the client gets a body shorter than announced. It
//! is not reported as an error to the runtime, because `lambda_runtime`
//! (1.5) would write its error "trailer" into the body as text.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_session::gateway::{GatewayBody, ReqwestBody};
use futures_core::Stream;
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::{Either, Full};
use lambda_http::lambda_runtime::{MetadataPrelude, StreamResponse};

use crate::event::text_values;

/// The body of a streamed response: the origin's ([`ReqwestBody`]) or the
/// gateway's own JSON answer.
pub type StreamedBody = GatewayBody<ReqwestBody>;

/// A response body as the stream `lambda_runtime` sends: its data chunks in
/// order; it ends at the body's end or at its first error (logged).
pub struct ResponseStream<B = StreamedBody> {
    body: B,
    done: bool,
}

impl<B> std::fmt::Debug for ResponseStream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<B> ResponseStream<B> {
    /// The stream of `body`.
    pub fn new(body: B) -> Self {
        Self { body, done: false }
    }
}

impl<B> Stream for ResponseStream<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.done = true,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    // Empty chunks and trailers: nothing to send.
                    _ => {}
                },
                Poll::Ready(Some(Err(e))) => {
                    log::warn!(
                        "edge-session: the origin's response body failed midway, the client's response is cut off: {e}"
                    );
                    self.done = true;
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

/// The metadata prelude of a response head (see the module docs).
pub fn prelude(status: http::StatusCode, headers: &HeaderMap) -> MetadataPrelude {
    let mut out = HeaderMap::with_capacity(headers.keys_len());
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values = text_values(headers, name);
        if *name == header::SET_COOKIE {
            cookies.extend(values);
        } else if *name == header::CONTENT_LENGTH || values.is_empty() {
            continue;
        } else if let Ok(value) = HeaderValue::from_str(&values.join(", ")) {
            out.insert(name.clone(), value);
        }
    }
    MetadataPrelude {
        status_code: status,
        headers: out,
        cookies,
    }
}

/// A streamed response: the prelude of `response`'s head, then its body.
pub fn stream_response<B>(response: http::Response<B>) -> StreamResponse<ResponseStream<B>> {
    let (parts, body) = response.into_parts();
    StreamResponse {
        metadata_prelude: prelude(parts.status, &parts.headers),
        stream: ResponseStream::new(body),
    }
}

/// One of the gateway's own answers (an error, a refusal) as a streamed
/// response.
pub fn own_response(response: http::Response<Bytes>) -> StreamResponse<ResponseStream> {
    stream_response(response.map(|body| Either::Right(Full::new(body))))
}
