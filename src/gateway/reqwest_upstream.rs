//! [`ReqwestUpstream`]: the origin over reqwest, streaming both ways (native
//! targets: reqwest's wasm32 client cannot stream a request body).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Limited};

use super::config::{DEFAULT_ORIGIN_TIMEOUT, GatewayConfig};
use super::upstream::Upstream;
use crate::error::{Error, Result};

/// The body of an origin response from [`ReqwestUpstream`]: reqwest's
/// stream, cut off with an error past `SESSION_MAX_BODY_BYTES` when set.
pub type ReqwestBody = http_body_util::Either<
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    reqwest::Body,
>;

/// An [`Upstream`] over reqwest (the AWS Lambda packaging, tests). The
/// request body is sent as a stream and the response comes back as soon as
/// its head is in, its body a stream.
#[derive(Debug, Clone)]
pub struct ReqwestUpstream {
    client: reqwest::Client,
    max_body_bytes: Option<u64>,
    timeout: Duration,
}

impl ReqwestUpstream {
    /// An upstream with its own client, which does not follow redirects
    /// (they go back to the browser, as from any proxy).
    pub fn new() -> Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::Transport)?;
        Ok(Self::with_client(client))
    }

    /// An upstream over an existing client (configure it not to follow redirects).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self {
            client,
            max_body_bytes: None,
            timeout: DEFAULT_ORIGIN_TIMEOUT,
        }
    }

    /// Takes the body limit and the origin timeout of `config`.
    #[must_use]
    pub fn configured(mut self, config: &GatewayConfig) -> Self {
        self.max_body_bytes = config.max_body_bytes;
        self.timeout = config.origin_timeout;
        self
    }
}

impl<B> Upstream<B> for ReqwestUpstream
where
    B: http_body::Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Body = ReqwestBody;

    async fn forward(&self, request: Request<B>) -> Result<Response<Self::Body>> {
        let (parts, body) = request.into_parts();
        let send = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(reqwest::Body::wrap(body))
            .send();
        // The request body is in memory on the Lambda: the time to the
        // response head is the origin's.
        let response = crate::platform::with_timeout(self.timeout, async {
            send.await.map_err(|e| Error::Origin {
                reason: "the request failed".to_owned(),
                source: Some(Box::new(e)),
            })
        })
        .await
        .map_err(|e| match e {
            Error::Timeout { ms } => Error::OriginTimeout { ms },
            e => e,
        })?;
        let response: Response<reqwest::Body> = response.into();
        Ok(match self.max_body_bytes {
            None => response.map(http_body_util::Either::Right),
            Some(limit) => response.map(|body| {
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                http_body_util::Either::Left(Limited::new(body, limit).boxed())
            }),
        })
    }
}
