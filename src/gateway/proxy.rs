//! The proxy path in two steps around the origin, on request and response
//! heads only: [`Gateway::prepare`] before the origin is called,
//! [`Gateway::finish`] once its response head is in. Bodies never pass
//! through here: each packaging hands the client's body to the origin and
//! the origin's body to the client untouched, as streams.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, request, response};

use super::config::{Origin, under};
use super::headers::is_session_header;
use super::headers::{
    MAX_API_BODY_BYTES, MAX_REQUEST_HEADER_BYTES, SESSION_STORE, add_session_headers,
    append_set_cookie, clean_response, client_ip, cookie_header, instruction_names, is_upgrade,
    mark_dropped, oversized_instruction, remove_cookie, remove_hop_by_hop, strip_session_headers,
};
use super::hygiene::{mark_private, path_is_canonical, set_forwarding};
use super::instructions::{self, Instructions};
use super::respond::{ErrorCode, error_response};
use super::signature::{self, SIGNATURE};
use super::{Gateway, OutagePolicy};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::platform::{unix_now_ms, with_timeout};
use crate::request::RequestSession;
use crate::session::ClientInfo;
use crate::store::Touch;

/// What the gateway does with a request, decided from its head alone.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Prepared {
    /// The gateway answers itself (a browser or admin API route, a refusal,
    /// a store error): send this and drop the client's body unread.
    Respond(Response<Bytes>),
    /// Send `request` to the origin with the client's body, untouched, then
    /// give the origin's response head to [`Gateway::finish`] with `pending`.
    Forward {
        /// The head to send: the origin's absolute URI (see [`Origin`]), the
        /// session headers added, the client's `x-session-*` headers and the
        /// session cookies removed.
        request: request::Parts,
        /// What [`Gateway::finish`] needs to know of this request.
        pending: Pending,
    },
}

/// The state a forwarded request carries from [`Gateway::prepare`] to
/// [`Gateway::finish`].
#[derive(Debug)]
pub struct Pending {
    state: State,
    upgrade: bool,
    /// The responses of this path keep the origin's caching headers.
    cache_public: bool,
}

#[derive(Debug)]
enum State {
    /// A skip path: no session work.
    Skipped,
    /// No `Cookie` header: an anonymous visitor, the store not asked. The
    /// session is begun in [`Gateway::finish`] only if the origin sends
    /// instructions.
    Anonymous(ClientInfo),
    /// The session as loaded; the origin's instructions apply to it.
    Session(Box<RequestSession>),
    /// The store was unavailable and the policy is fail-open.
    Unavailable(Error),
}

impl Pending {
    /// True when the request is a protocol upgrade (a WebSocket handshake):
    /// a `101` answer then carries the connection on.
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }
}

/// What the client gets once the origin's response head is in.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Finished {
    /// The origin's response with this head and its own body, untouched.
    Pass(response::Parts),
    /// This answer instead (a refused instruction, a store error): drop the
    /// origin's body unread.
    Replace(Response<Bytes>),
}

impl<B: Backend> Gateway<B> {
    /// The first step: checks the request head's sizes, answers the browser
    /// and admin APIs, and for every other path loads the session (one round
    /// trip with a valid cookie, none without) and rewrites the head for the
    /// origin. Never reads a body: the API routes take none, and a
    /// `Content-Length` over the limit is refused here.
    pub async fn prepare(&self, mut parts: request::Parts) -> Prepared {
        if let Some(refusal) = self.oversized_request(&parts) {
            return Prepared::Respond(refusal);
        }
        let path = parts.uri.path().to_owned();
        if !path_is_canonical(&path) {
            return Prepared::Respond(error_response(
                ErrorCode::BadRequest,
                "the request path has dot segments, empty segments or encoded separators",
            ));
        }
        let config = self.config();
        if under(&path, &config.api_prefix) {
            let rest = &path[config.api_prefix.len()..];
            let answer = self.within_deadline(async { Ok(self.api(&parts, rest).await) });
            return Prepared::Respond(match answer.await {
                Ok(response) => response,
                Err(e) => self.store_error(&e),
            });
        }
        strip_session_headers(&mut parts.headers);
        let upgrade = is_upgrade(&parts.headers);
        let state = if config.skips(&path) {
            State::Skipped
        } else {
            match self.load(&mut parts).await {
                Ok(state) => state,
                Err(response) => return Prepared::Respond(response),
            }
        };
        // Neither the session cookie nor the sync cookie reaches the origin,
        // on skip paths too: the origin gets the non-secret handle only.
        if parts.headers.contains_key(header::COOKIE) {
            remove_cookie(&mut parts.headers, &self.store().cookies().config().name);
            remove_cookie(&mut parts.headers, &self.store().sync_cookie_name());
        }
        if let Some(refusal) = self.rewrite_for_origin(&mut parts, upgrade) {
            return Prepared::Respond(refusal);
        }
        let cache_public = config.cache_is_public(&path);
        Prepared::Forward {
            request: parts,
            pending: Pending {
                state,
                upgrade,
                cache_public,
            },
        }
    }

    /// Loads the session of a proxied request and puts its headers on the
    /// head; the session and sync cookies never reach the origin.
    async fn load(
        &self,
        parts: &mut request::Parts,
    ) -> std::result::Result<State, Response<Bytes>> {
        let client = self.client_of(&parts.headers, &parts.extensions);
        if !parts.headers.contains_key(header::COOKIE) {
            return Ok(State::Anonymous(client));
        }
        let cookie = cookie_header(&parts.headers);
        let begun = self.within_deadline(self.store().begin(cookie.as_deref(), client));
        let state = match begun.await {
            Ok(session) => {
                if let Some(s) = session.session() {
                    add_session_headers(&mut parts.headers, s);
                }
                State::Session(Box::new(session))
            }
            Err(e) if self.fails_open(&e) => {
                log::warn!(
                    "edge-session: session store unavailable, request forwarded without a session (fail-open): {e}"
                );
                parts.headers.insert(
                    HeaderName::from_static(SESSION_STORE),
                    HeaderValue::from_static("unavailable"),
                );
                State::Unavailable(e)
            }
            Err(e) => return Err(self.store_error(&e)),
        };
        Ok(state)
    }

    /// The second step, once the origin's response head is in: validates
    /// and applies the origin's `x-session-*` instructions in one round trip
    /// (none without any) and sets, re-signs or clears the cookies, before
    /// anything reaches the client. A bad instruction is `502
    /// bad_session_instruction` with nothing applied.
    ///
    /// A slide the session's read found due runs here, before the answer
    /// (see [`Self::finish_deferred`] to run it after the response instead).
    pub async fn finish(&self, pending: Pending, head: response::Parts) -> Finished {
        let (finished, touch) = self.finish_deferred(pending, head).await;
        self.after_response(touch).await;
        finished
    }

    /// [`Self::finish`] without the slide: when the read found one due and
    /// the origin's instructions wrote nothing (a write slides itself), it
    /// comes back as a [`Touch`] for [`Self::after_response`], which the
    /// caller runs once the response is on its way (the native host spawns
    /// it, the Worker hands it to `waitUntil`).
    pub async fn finish_deferred(
        &self,
        pending: Pending,
        mut head: response::Parts,
    ) -> (Finished, Option<Touch>) {
        let upgrade = pending.upgrade && head.status == http::StatusCode::SWITCHING_PROTOCOLS;
        if let Some(refusal) = self.oversized_response(&head) {
            return (Finished::Replace(refusal), None);
        }
        let mut touch = None;
        let (finished, personal) = match pending.state {
            // No cookie and no instruction: nothing for the store to do.
            State::Anonymous(_) if !head.headers.keys().any(is_session_header) => {
                clean_response(&mut head.headers, upgrade);
                (Finished::Pass(head), false)
            }
            // Instructions for a visitor without a session: begun now (no
            // round trip without a cookie), committed as usual.
            State::Anonymous(client) => match self.store().begin(None, client).await {
                Ok(session) => {
                    let (finished, cookie, due) = self.commit(session, head, upgrade).await;
                    touch = due;
                    (finished, cookie)
                }
                Err(e) => return (Finished::Replace(self.store_error(&e)), None),
            },
            State::Skipped => {
                clean_response(&mut head.headers, upgrade);
                (Finished::Pass(head), false)
            }
            State::Unavailable(error) => {
                let sent = instruction_names(&head.headers);
                clean_response(&mut head.headers, upgrade);
                let cleared = self.dropped(&mut head.headers, &sent, &error);
                (Finished::Pass(head), cleared)
            }
            State::Session(session) => {
                let personal = session.session().is_some();
                let (finished, cookie, due) = self.commit(*session, head, upgrade).await;
                touch = due;
                (finished, personal || cookie)
            }
        };
        match finished {
            Finished::Pass(mut head) => {
                if personal && !pending.cache_public {
                    mark_private(&mut head.headers);
                }
                (Finished::Pass(head), touch)
            }
            replaced => (replaced, touch),
        }
    }

    /// Runs a slide [`Self::finish_deferred`] handed back (nothing for
    /// `None`), within the store deadline; a failure is only logged (the
    /// next read finds the slide still due).
    pub async fn after_response(&self, touch: Option<Touch>) {
        if let Some(touch) = touch
            && let Err(e) = self.within_deadline(self.store().touch(touch)).await
        {
            log::warn!("edge-session: the slide after the response failed: {e}");
        }
    }

    /// Names the instructions a fail-open response drops; a dropped logout
    /// still clears the cookie in the browser (the server-side session lives
    /// on until its idle timeout). True when a cookie was cleared.
    fn dropped(&self, headers: &mut http::HeaderMap, sent: &[&str], error: &Error) -> bool {
        mark_dropped(headers, sent, error);
        if !sent.contains(&instructions::LOGOUT) {
            return false;
        }
        log::warn!(
            "edge-session: logout during a store outage: the cookie is cleared, the session itself expires after its idle timeout"
        );
        append_set_cookie(headers, &self.store().cookies().clear_cookie());
        true
    }

    /// Applies the instructions; also tells whether a cookie was set.
    async fn commit(
        &self,
        mut session: RequestSession,
        mut head: response::Parts,
        upgrade: bool,
    ) -> (Finished, bool, Option<Touch>) {
        // The details go to the log; the browser gets the code only.
        let refused = |message: &str| {
            log::error!("edge-session: origin sent a refused session instruction: {message}");
            let response = error_response(
                ErrorCode::BadSessionInstruction,
                "the origin sent a session instruction the gateway refused",
            );
            (Finished::Replace(response), false, None)
        };
        let sent = instruction_names(&head.headers);
        if let Some(refusal) = oversized_instruction(&head.headers) {
            return (Finished::Replace(refusal), false, None);
        }
        let instructions = match Instructions::take(&mut head.headers) {
            Ok(i) => i,
            Err(e) => return refused(&e.to_string()),
        };
        if let Err(e) = instructions.apply(&mut session) {
            return refused(&e.to_string());
        }
        let commit = match self
            .within_deadline(self.store().commit_deferred(session))
            .await
        {
            Ok(c) => c,
            Err(e) if instructions::is_instruction_fault(&e) => return refused(&e.to_string()),
            Err(e) if self.fails_open(&e) => {
                // The origin has answered: its response goes out, without
                // the instructions (not applied, or after a timeout not
                // confirmed) and without any cookie change but a logout's.
                clean_response(&mut head.headers, upgrade);
                let cleared = self.dropped(&mut head.headers, &sent, &e);
                return (Finished::Pass(head), cleared, None);
            }
            Err(e) => return (Finished::Replace(self.store_error(&e)), false, None),
        };
        clean_response(&mut head.headers, upgrade);
        let mut cookie = false;
        for value in [commit.set_cookie, commit.sync_cookie]
            .into_iter()
            .flatten()
        {
            append_set_cookie(&mut head.headers, &value);
            cookie = true;
        }
        (Finished::Pass(head), cookie, commit.touch)
    }

    /// The answer to an origin that could not be reached: `504
    /// origin_timeout` for [`Error::OriginTimeout`], `502
    /// origin_response_too_large` for [`Error::TooLarge`], else `502
    /// origin_unavailable`. The packagings call it when their forward fails.
    pub fn origin_error(&self, error: &Error) -> Response<Bytes> {
        match error {
            Error::OriginTimeout { .. } => {
                log::warn!("edge-session: origin timed out: {error}");
                error_response(
                    ErrorCode::OriginTimeout,
                    "the origin did not answer in time",
                )
            }
            Error::TooLarge { .. } => {
                log::error!("edge-session: origin response refused: {error}");
                error_response(
                    ErrorCode::OriginResponseTooLarge,
                    "the origin's response is over the gateway's size limit",
                )
            }
            _ => {
                log::warn!("edge-session: origin unavailable: {error}");
                error_response(
                    ErrorCode::OriginUnavailable,
                    "the origin could not be reached",
                )
            }
        }
    }

    /// Points the head at the origin ([`Origin`]), makes the forwarding
    /// headers the gateway's own (see [`set_forwarding`]), removes hop-by-hop
    /// headers (but a WebSocket handshake's `Upgrade`) and, with
    /// `SESSION_ORIGIN_SECRET`, signs the head ([`signature`]). `Some` is
    /// the refusal of a request whose URI cannot be pointed there.
    fn rewrite_for_origin(
        &self,
        parts: &mut request::Parts,
        upgrade: bool,
    ) -> Option<Response<Bytes>> {
        let config = self.config();
        let bad_path =
            || error_response(ErrorCode::BadRequest, "the request path is not a valid URI");
        let client = client_ip(
            &parts.headers,
            &parts.extensions,
            config.client_ip_header.as_ref(),
        );
        let proto = parts.uri.scheme_str().unwrap_or("http").to_owned();
        let host = parts.headers.remove(header::HOST).or_else(|| {
            let authority = parts.uri.authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        match &config.origin {
            Origin::Url(base) => {
                if let Some((scheme, authority)) = &self.origin_base {
                    let mut uri = http::uri::Parts::default();
                    uri.scheme = Some(scheme.clone());
                    uri.authority = Some(authority.clone());
                    uri.path_and_query = Some(
                        parts
                            .uri
                            .path_and_query()
                            .cloned()
                            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                    );
                    match http::Uri::from_parts(uri) {
                        Ok(uri) => parts.uri = uri,
                        Err(_) => return Some(bad_path()),
                    }
                } else {
                    let path_and_query = parts
                        .uri
                        .path_and_query()
                        .map_or("/", http::uri::PathAndQuery::as_str);
                    match format!("{base}{path_and_query}").parse() {
                        Ok(uri) => parts.uri = uri,
                        Err(_) => return Some(bad_path()),
                    }
                }
            }
            // The request keeps its own (absolute) URL.
            Origin::SameUrl | Origin::Service(_) => {
                if parts.uri.authority().is_none() {
                    return Some(bad_path());
                }
            }
        }
        set_forwarding(
            &mut parts.headers,
            client,
            &proto,
            host,
            config.trust_forwarded,
        );
        remove_hop_by_hop(&mut parts.headers, upgrade);
        if let Some(secret) = config.origin_secret() {
            let path_and_query = parts
                .uri
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            let value = signature::sign(
                secret,
                parts.method.as_str(),
                path_and_query,
                unix_now_ms() / 1000,
                &parts.headers,
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                parts
                    .headers
                    .insert(HeaderName::from_static(SIGNATURE), value);
            }
        }
        None
    }

    /// `431 headers_too_large`, or `413 body_too_large` for a declared
    /// `Content-Length` over the limit (1 KiB on the API routes,
    /// `SESSION_MAX_BODY_BYTES` elsewhere), before any other work.
    fn oversized_request(&self, parts: &request::Parts) -> Option<Response<Bytes>> {
        let headers: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if headers > MAX_REQUEST_HEADER_BYTES {
            return Some(error_response(
                ErrorCode::HeadersTooLarge,
                &format!(
                    "the request headers are {headers} bytes, over the limit of {MAX_REQUEST_HEADER_BYTES} bytes"
                ),
            ));
        }
        let limit = if under(parts.uri.path(), &self.config().api_prefix) {
            Some(MAX_API_BODY_BYTES as u64)
        } else {
            self.config().max_body_bytes
        }?;
        let body = content_length(&parts.headers)?;
        (body > limit).then(|| {
            error_response(
                ErrorCode::BodyTooLarge,
                &format!("the request body is {body} bytes, over the limit of {limit} bytes"),
            )
        })
    }

    /// `502 origin_response_too_large` for an origin response whose
    /// `Content-Length` is over `SESSION_MAX_BODY_BYTES`.
    fn oversized_response(&self, head: &response::Parts) -> Option<Response<Bytes>> {
        let limit = self.config().max_body_bytes?;
        let actual = content_length(&head.headers)?;
        (actual > limit).then(|| {
            self.origin_error(&Error::TooLarge {
                what: "origin response body",
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
                actual: usize::try_from(actual).unwrap_or(usize::MAX),
            })
        })
    }

    /// Runs one store step within [`super::GatewayConfig::store_deadline`].
    pub(crate) async fn within_deadline<T>(
        &self,
        step: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        with_timeout(self.config().store_deadline, step).await
    }

    /// True when `error` is an outage the policy lets through.
    fn fails_open(&self, error: &Error) -> bool {
        self.config().outage == OutagePolicy::FailOpen && error.is_unavailable()
    }
}

/// The `Content-Length` of a head, when it has a valid one.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
