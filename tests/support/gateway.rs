//! The gateway driven in process the way a packaging drives it, with whole
//! bodies for the tests' convenience: a request of [`Bytes`] in, the
//! streamed response collected.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use edge_session::gateway::{Gateway, GatewayConfig, ReqwestUpstream, Upstream};

use super::{Counting, Store};
use edge_session::{Backend, Hooks};
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};

/// An error of a response body that was cut off.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A [`Gateway`] with its upstream (reqwest by default).
#[derive(Debug)]
pub struct TestGateway<B, U = ReqwestUpstream> {
    pub gateway: Gateway<B>,
    pub upstream: U,
}

impl<B: Backend> TestGateway<B, ReqwestUpstream> {
    /// `gateway` in front of a reqwest upstream configured as the gateway is.
    pub fn reqwest(gateway: Gateway<B>) -> Self {
        let upstream = ReqwestUpstream::new().unwrap().configured(gateway.config());
        Self { gateway, upstream }
    }
}

impl<B, U> TestGateway<B, U>
where
    B: Backend,
    U: Upstream<Full<Bytes>>,
    U::Body: http_body::Body<Data = Bytes> + Unpin,
    <U::Body as http_body::Body>::Error: Into<BodyError>,
{
    pub fn new(gateway: Gateway<B>, upstream: U) -> Self {
        Self { gateway, upstream }
    }

    #[must_use]
    pub fn with_hooks(self, hooks: Arc<dyn Hooks>) -> Self {
        Self {
            gateway: self.gateway.with_hooks(hooks),
            upstream: self.upstream,
        }
    }

    /// The response with its whole body; panics if the body was cut off.
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        self.try_handle(request)
            .await
            .unwrap_or_else(|e| panic!("the response body was cut off: {e}"))
    }

    /// The response with its whole body, or the error that cut it off.
    pub async fn try_handle(&self, request: Request<Bytes>) -> Result<Response<Bytes>, BodyError> {
        let response = self
            .gateway
            .handle(&self.upstream, request.map(Full::new))
            .await;
        let (head, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(head, body))
    }
}

impl<B, U> std::ops::Deref for TestGateway<B, U> {
    type Target = Gateway<B>;

    fn deref(&self) -> &Gateway<B> {
        &self.gateway
    }
}

/// An origin in process: records what it receives, answers what it is told.
#[derive(Debug, Clone, Default)]
pub struct RecordingOrigin {
    pub seen: Arc<Mutex<Vec<http::HeaderMap>>>,
    pub answer: Arc<Mutex<Vec<(String, String)>>>,
    pub body: Arc<Mutex<Bytes>>,
    /// The status it answers with (default 200).
    pub status: Arc<Mutex<http::StatusCode>>,
    /// Method and URI of every request received.
    pub requests: Arc<Mutex<Vec<(http::Method, http::Uri)>>>,
}

impl RecordingOrigin {
    pub fn last(&self) -> http::HeaderMap {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }

    pub fn answer_with(&self, headers: &[(&str, &str)], body: Bytes) {
        *self.answer.lock().unwrap() = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        *self.body.lock().unwrap() = body;
    }
}

impl Upstream<Full<Bytes>> for RecordingOrigin {
    type Body = Full<Bytes>;

    async fn forward(
        &self,
        request: Request<Full<Bytes>>,
    ) -> edge_session::Result<Response<Full<Bytes>>> {
        self.seen.lock().unwrap().push(request.headers().clone());
        self.requests
            .lock()
            .unwrap()
            .push((request.method().clone(), request.uri().clone()));
        let body = self.body.lock().unwrap().clone();
        let mut response = Response::new(Full::new(body.clone()));
        *response.status_mut() = *self.status.lock().unwrap();
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, body.len().into());
        for (name, value) in self.answer.lock().unwrap().iter() {
            response.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        Ok(response)
    }
}

/// A gateway over `store` in front of `origin`, configured with `extra`
/// variables besides the origin URL.
pub fn gateway_with(
    store: Store,
    upstream: RecordingOrigin,
    extra: &[(&str, &str)],
) -> TestGateway<Counting<edge_session::AnyBackend>, RecordingOrigin> {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = GatewayConfig::from_lookup(|name| match name {
        "ORIGIN_URL" => Some("http://origin.invalid".to_owned()),
        _ => extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()),
    })
    .unwrap();
    TestGateway::new(Gateway::new(store, config), upstream)
}

/// A request head to the gateway from a browser at `shop.example`, with
/// `cookie` as its `Cookie` header.
pub fn browser_get(path: &str, cookie: Option<&str>) -> http::request::Builder {
    let mut builder = Request::builder()
        .method(http::Method::GET)
        .uri(path)
        .header("host", "shop.example")
        .header("user-agent", "edge-session-tests/1");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    builder
}

/// The `code` of a JSON error body ("" when there is none).
pub fn error_code(response: &Response<Bytes>) -> String {
    let body: serde_json::Value =
        serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null);
    body["code"].as_str().unwrap_or_default().to_owned()
}
