//! Reaching the origin: the Workers `fetch` (an `ORIGIN_URL`, or the
//! request's own URL when the Worker runs on a route) or a service binding
//! (`ORIGIN_SERVICE`), with the client's body stream handed over untouched and
//! a timeout on the origin's response head.

use std::pin::pin;
use std::time::Duration;

use edge_session::gateway::Origin;
use futures_util::future::{Either, select};
use http::request;
use worker::js_sys::{self, Array, Function, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, ReadableStream, RequestRedirect, WritableStream};
use worker::{AbortController, Delay, Env, Fetch, Fetcher, Request, Response};

use crate::headers::js_headers;

/// Where a forwarded request goes.
#[derive(Debug)]
pub enum Target {
    /// The Workers `fetch`, to the URI of the rewritten head: the
    /// `ORIGIN_URL` with the request's path and query, or the request's own
    /// URL (a Worker on a route reaches the zone's origin server this way).
    Fetch,
    /// A service binding (`ORIGIN_SERVICE`): another Worker.
    Service(Fetcher),
}

impl Target {
    /// The target of `origin`, the binding looked up in `env`.
    pub fn of(origin: &Origin, env: &Env) -> edge_session::Result<Self> {
        match origin {
            Origin::Service(name) => {
                env.service(name)
                    .map(Target::Service)
                    .map_err(|e| edge_session::Error::Config {
                        name: "ORIGIN_SERVICE",
                        reason: format!("no service binding named {name:?}: {e}"),
                    })
            }
            _ => Ok(Target::Fetch),
        }
    }
}

/// Sends `head` with `body` (the client's own stream, never read here) to
/// `target`, redirects passed back rather than followed, and waits up to
/// `timeout` for the response head, counted from the end of the upload (a
/// slow upload is not cut): past it the request is aborted and the answer is
/// [`edge_session::Error::OriginTimeout`]. A fetch that fails is
/// [`edge_session::Error::Origin`]. Once the head is in, nothing aborts the
/// response body.
pub async fn send(
    target: &Target,
    head: &request::Parts,
    body: Option<ReadableStream>,
    timeout: Duration,
) -> edge_session::Result<Response> {
    let failed = |what: &str, e: worker::Error| edge_session::Error::Origin {
        reason: format!("{what}: {e}"),
        source: None,
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let headers = js_headers(&head.headers).map_err(|e| failed("request headers", e))?;
    let init = web_sys::RequestInit::new();
    init.set_method(head.method.as_str());
    init.set_headers(headers.as_ref());
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(Some(&signal));
    // The end of the upload starts the clock; without a body it starts now.
    let length = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (body, uploaded) = match body.map(|body| watch_end(body, length)) {
        Some(Ok((body, ended))) => (Some(body), Some(ended)),
        Some(Err(body)) => (Some(body), None),
        None => (None, None),
    };
    if let Some(body) = &body {
        init.set_body(body);
    }
    let request = web_sys::Request::new_with_str_and_init(&head.uri.to_string(), &init)
        .map(Request::from)
        .map_err(|e| failed("request", e.into()))?;
    let response = async {
        match target {
            Target::Fetch => Fetch::Request(request).send_with_signal(&signal).await,
            // The signal travels in the request.
            Target::Service(service) => service.fetch_request(request).await,
        }
    };
    let timer = async {
        if let Some(uploaded) = uploaded {
            // Never rejects; pending for as long as the upload goes on.
            let _ = uploaded.await;
        }
        Delay::from(timeout).await;
    };
    match select(pin!(response), pin!(timer)).await {
        Either::Left((response, _timer)) => response.map_err(|e| failed("fetch", e)),
        Either::Right(((), _response)) => {
            controller.abort();
            Err(edge_session::Error::OriginTimeout {
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
        }
    }
}

/// `body` piped into one of workerd's own byte streams, which pass every
/// chunk on as it is (the bytes stay in the runtime, never in wasm or
/// JavaScript): a `FixedLengthStream` of the request's `Content-Length`
/// (the origin then gets that `Content-Length`, not a chunked body), else an
/// `IdentityTransformStream`. The returned future settles once the pipe has
/// handed the client's body on whole (or failed). `body` itself if the
/// runtime has neither stream.
fn watch_end(
    body: ReadableStream,
    length: Option<u64>,
) -> Result<(ReadableStream, JsFuture), ReadableStream> {
    let piped = (|| {
        let (name, args) = match length {
            // Exact up to 2^53 bytes, far beyond any request body.
            #[allow(clippy::cast_precision_loss)]
            Some(length) => (
                "FixedLengthStream",
                Array::of1(&JsValue::from_f64(length as f64)),
            ),
            None => ("IdentityTransformStream", Array::new()),
        };
        let constructor = Reflect::get(&js_sys::global(), &JsValue::from_str(name))
            .ok()?
            .dyn_into::<Function>()
            .ok()?;
        let stream = Reflect::construct(&constructor, &args).ok()?;
        let readable = Reflect::get(&stream, &JsValue::from_str("readable"))
            .ok()?
            .dyn_into::<ReadableStream>()
            .ok()?;
        let writable = Reflect::get(&stream, &JsValue::from_str("writable"))
            .ok()?
            .dyn_into::<WritableStream>()
            .ok()?;
        Some((readable, writable))
    })();
    match piped {
        Some((readable, writable)) => {
            let ended = body.pipe_to(&writable);
            Ok((readable, JsFuture::from(ended)))
        }
        None => Err(body),
    }
}
