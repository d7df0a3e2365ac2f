//! Reaching the origin: the Workers `fetch` (an `ORIGIN_URL`, or the
//! request's own URL when the Worker runs on a route) or a service binding
//! (`ORIGIN_SERVICE`), with the client's body stream handed over untouched and
//! a timeout on the origin's response head.

use std::pin::pin;
use std::time::Duration;

use edge_session::gateway::Origin;
use futures_util::future::{Either, select};
use http::request;
use worker::web_sys::{self, ReadableStream, RequestRedirect};
use worker::{AbortSignal, Delay, Env, Fetch, Fetcher, Request, Response};

use crate::body::Upload;
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

/// Why no origin response head came.
#[derive(Debug)]
pub enum Failure {
    /// The origin could not be reached ([`edge_session::Error::Origin`]) or
    /// sent no head in time ([`edge_session::Error::OriginTimeout`]): the
    /// gateway's `origin_error` answers it.
    Origin(edge_session::Error),
    /// The upload, which declared no `Content-Length`, went past
    /// `SESSION_MAX_BODY_BYTES` and was aborted.
    UploadTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The client's body broke off before the origin answered; the origin
    /// request was aborted.
    UploadBroken,
}

/// Sends `head` with `body` (the client's own stream, never read here, see
/// [`crate::body`]) to `target`, redirects passed back rather than followed,
/// and waits up to `timeout` for the response head, counted from the end of
/// the upload (a slow upload is not cut): past it the request is aborted and
/// the answer is [`edge_session::Error::OriginTimeout`]. A fetch that fails
/// is [`edge_session::Error::Origin`]. Once the head is in, nothing aborts
/// the response body. An upload without a `Content-Length` is held to
/// `limit` (`SESSION_MAX_BODY_BYTES`).
pub async fn send(
    target: &Target,
    head: &request::Parts,
    body: Option<ReadableStream>,
    timeout: Duration,
    limit: Option<u64>,
) -> Result<Response, Failure> {
    let failed = |what: &str, e: worker::Error| {
        Failure::Origin(edge_session::Error::Origin {
            reason: format!("{what}: {e}"),
            source: None,
        })
    };
    let controller = web_sys::AbortController::new().map_err(|e| failed("abort", e.into()))?;
    let signal = controller.signal();
    let mut headers = head.headers.clone();
    // workerd's fetch would hand back the origin's interim `100 Continue` as
    // the response; the client's own `Expect` is answered by workerd.
    headers.remove(http::header::EXPECT);
    let headers = js_headers(&headers).map_err(|e| failed("request headers", e))?;
    let init = web_sys::RequestInit::new();
    init.set_method(head.method.as_str());
    init.set_headers(headers.as_ref());
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(Some(&signal));
    let length = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (upload, ended) = body
        .as_ref()
        .and_then(|body| Upload::new(body, length, limit, &controller))
        .unzip();
    if let Some(body) = upload.as_ref().map(|u| &u.body).or(body.as_ref()) {
        init.set_body(body);
    }
    let request = web_sys::Request::new_with_str_and_init(&head.uri.to_string(), &init)
        .map(Request::from)
        .map_err(|e| failed("request", e.into()))?;
    let signal = AbortSignal::from(signal);
    let response = async {
        match target {
            Target::Fetch => Fetch::Request(request).send_with_signal(&signal).await,
            // The signal travels in the request.
            Target::Service(service) => service.fetch_request(request).await,
        }
    };
    // The end of the upload starts the clock; without a body it starts now.
    let timer = async {
        if let Some(ended) = ended {
            // Never rejects; pending for as long as the upload goes on.
            let _ = ended.await;
        }
        Delay::from(timeout).await;
    };
    match select(pin!(response), pin!(timer)).await {
        Either::Left((Ok(response), _timer)) => {
            if let Some(upload) = &upload {
                upload.answered();
            }
            Ok(response)
        }
        Either::Left((Err(e), _timer)) => Err(match (&upload, limit) {
            (Some(upload), Some(limit)) if upload.over() => Failure::UploadTooLarge { limit },
            (Some(upload), _) if upload.broken() => Failure::UploadBroken,
            _ => failed("fetch", e),
        }),
        Either::Right(((), _response)) => {
            controller.abort();
            Err(Failure::Origin(edge_session::Error::OriginTimeout {
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }))
        }
    }
}
