//! The browser API (the signed-in user's own sessions) and the admin API.
//!
//! | route | answer |
//! |---|---|
//! | `GET <prefix>` | the user's own session: `{"id","user","fields","created","last_seen","expires","absolute_expiry"}`; `fields` holds only those declared in `SESSION_PUBLIC_FIELDS` |
//! | `GET <prefix>/devices` | `{"sessions": [{"id","created","last_seen","expires","absolute_expiry","user_agent","current"}]}` |
//! | `DELETE <prefix>/devices/{id}` | `{"revoked": true}` (404 when not found) |
//! | `POST <prefix>/logout` | `{"logged_out": 1}`, cookie cleared |
//! | `POST <prefix>/logout-all` | `{"logged_out": n}`, cookie cleared |
//! | `GET <prefix>/admin/users/{user}/sessions` | `{"user", "sessions": [...]}` |
//! | `DELETE <prefix>/admin/users/{user}/sessions` | `{"user", "revoked": n}` |
//! | `GET <prefix>/admin/query?field=F&value=V[&cursor=C][&limit=N]` | a [`Page`]: `{"sessions": [...], "total", "next_cursor"}` |
//! | `GET <prefix>/admin/counts?field=F[&top=N]` | a [`Counts`]: `{"field", "distinct", "top": [{"value", "sessions"}]}` |
//! | `GET <prefix>/admin/active[?since=S][&cursor=C][&limit=N]` | a [`Page`] of the sessions used in the last `S` seconds |
//! | `GET <prefix>/admin/stats` | a [`Stats`]: `{"now", "active_sessions", "active_last_10_minutes", "days", "fields"}` |
//!
//! Times are milliseconds since the Unix epoch. State-changing browser calls
//! must be same-origin (`Sec-Fetch-Site: same-origin`, or without it an
//! `Origin` equal to the gateway's own) or come from an `Origin` listed in
//! `SESSION_TRUSTED_ORIGINS`, else 403 `cross_origin`.
//!
//! Admin query strings are `application/x-www-form-urlencoded`: `cursor`
//! defaults to 0, `limit` to 100 (at most [`MAX_PAGE`]), `top` to 20, `since`
//! to 600. A missing, repeated, unknown or malformed parameter, or a field not
//! declared in `SESSION_INDEXES`, is `400 bad_request`.
//!
//! [`Page`]: crate::query::Page
//! [`Counts`]: crate::query::Counts
//! [`Stats`]: crate::query::Stats
//! [`MAX_PAGE`]: crate::query::MAX_PAGE

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, request::Parts};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::Gateway;
use super::headers::append_set_cookie;
use super::respond::{ErrorCode, error_response, json_response};
use crate::backend::Backend;
use crate::cookie::SessionHandle;
use crate::request::{Logout, RequestSession};
use crate::session::DeviceSession;

enum Route<'a> {
    Session,
    Devices,
    Device(&'a str),
    Logout,
    LogoutAll,
    AdminUserSessions(&'a str),
    Admin(Analytics),
}

/// The admin API's read-only analytics routes.
#[derive(Clone, Copy)]
enum Analytics {
    Query,
    Counts,
    Active,
    Stats,
}

impl Route<'_> {
    fn methods(&self) -> &'static [Method] {
        match self {
            Route::Session | Route::Devices | Route::Admin(_) => &[Method::GET],
            Route::Device(_) => &[Method::DELETE],
            Route::Logout | Route::LogoutAll => &[Method::POST],
            Route::AdminUserSessions(_) => &[Method::GET, Method::DELETE],
        }
    }
}

fn route(rest: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        [""] => Route::Session,
        ["devices"] => Route::Devices,
        ["devices", id] => Route::Device(id),
        ["logout"] => Route::Logout,
        ["logout-all"] => Route::LogoutAll,
        ["admin", "users", user, "sessions"] => Route::AdminUserSessions(user),
        ["admin", "query"] => Route::Admin(Analytics::Query),
        ["admin", "counts"] => Route::Admin(Analytics::Counts),
        ["admin", "active"] => Route::Admin(Analytics::Active),
        ["admin", "stats"] => Route::Admin(Analytics::Stats),
        _ => return None,
    })
}

fn device_json(d: &DeviceSession, current: Option<&SessionHandle>) -> serde_json::Value {
    json!({
        "id": d.handle,
        "created": d.created,
        "last_seen": d.last_seen,
        "expires": d.expires,
        "absolute_expiry": d.absolute_expiry,
        "user_agent": d.user_agent,
        "current": Some(&d.handle) == current,
    })
}

impl<B: Backend> Gateway<B> {
    pub(super) async fn api(&self, request: &Parts, rest: &str) -> Response<Bytes> {
        let Some(route) = route(rest) else {
            return error_response(ErrorCode::NotFound, "no such API route");
        };
        if !route.methods().contains(&request.method) {
            let mut response = error_response(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            );
            let allow: Vec<&str> = route.methods().iter().map(Method::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
        match route {
            Route::AdminUserSessions(user) => self.admin_user(request, user).await,
            Route::Admin(analytics) => self.admin_analytics(request, analytics).await,
            route => self.browser(request, route).await,
        }
    }

    async fn browser(&self, request: &Parts, route: Route<'_>) -> Response<Bytes> {
        if request.method != Method::GET && !self.same_origin(request) {
            return error_response(
                ErrorCode::CrossOrigin,
                "state-changing session calls must come from the same origin",
            );
        }
        let headers = &request.headers;
        let cookie = super::cookie_header(headers);
        let session = match self
            .store()
            .begin(
                cookie.as_deref(),
                self.client_of(headers, &request.extensions),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return self.store_error(&e),
        };
        let (Some(user), Some(current)) =
            (session.user().map(str::to_owned), session.handle().cloned())
        else {
            return error_response(ErrorCode::Unauthenticated, "not signed in");
        };
        match route {
            Route::Session => {
                let response = self.own_session(&session);
                // A read-only answer: a due slide runs right after (the
                // browser API is not latency-critical).
                self.after_response(session.touch()).await;
                response
            }
            Route::Devices => match self.store().devices(&user).await {
                Ok(devices) => {
                    // A read-only answer: a due slide runs right after.
                    self.after_response(session.touch()).await;
                    json_response(
                        StatusCode::OK,
                        &json!({ "sessions": devices.iter().map(|d| device_json(d, Some(&current))).collect::<Vec<_>>() }),
                    )
                }
                Err(e) => self.store_error(&e),
            },
            Route::Device(id) => {
                let Some(handle) = SessionHandle::parse(id) else {
                    return error_response(ErrorCode::NotFound, "no such session");
                };
                if handle == current {
                    return self.logout(session, Logout::Current).await;
                }
                match self.store().revoke(&user, &handle).await {
                    Ok(true) => json_response(StatusCode::OK, &json!({ "revoked": true })),
                    Ok(false) => error_response(ErrorCode::NotFound, "no such session"),
                    Err(e) => self.store_error(&e),
                }
            }
            Route::Logout => self.logout(session, Logout::Current).await,
            Route::LogoutAll => self.logout(session, Logout::All).await,
            Route::AdminUserSessions(_) | Route::Admin(_) => {
                error_response(ErrorCode::NotFound, "no such API route")
            }
        }
    }

    fn own_session(&self, session: &RequestSession) -> Response<Bytes> {
        let Some(s) = session.session() else {
            return error_response(ErrorCode::Unauthenticated, "not signed in");
        };
        // Only the fields declared in SESSION_PUBLIC_FIELDS reach page
        // JavaScript.
        let (mut fields, _invalid) = s.data();
        let public = &self.config().public_fields;
        fields.retain(|name, _| public.iter().any(|p| p == name));
        json_response(
            StatusCode::OK,
            &json!({
                "id": s.handle(),
                "user": s.user(),
                "fields": fields,
                "created": s.created(),
                "last_seen": s.last_seen(),
                "expires": s.expires(),
                "absolute_expiry": s.absolute_expiry(),
            }),
        )
    }

    async fn logout(&self, mut session: RequestSession, scope: Logout) -> Response<Bytes> {
        session.logout(scope);
        match self.store().commit(session).await {
            Ok(commit) => {
                let mut response =
                    json_response(StatusCode::OK, &json!({ "logged_out": commit.destroyed }));
                if let Some(cookie) = commit.set_cookie {
                    append_set_cookie(response.headers_mut(), &cookie);
                }
                response
            }
            Err(e) => self.store_error(&e),
        }
    }

    /// The CSRF check: `Sec-Fetch-Site: same-origin`, or (for browsers that do
    /// not send it) an `Origin` equal to the gateway's own or a trusted one.
    fn same_origin(&self, request: &Parts) -> bool {
        let headers = &request.headers;
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(|o| o.trim_end_matches('/'));
        let trusted = origin.is_some_and(|o| self.config().trusted_origins.iter().any(|t| t == o));
        if let Some(site) = headers.get("sec-fetch-site") {
            // A trusted origin's cross-site call passes; any other only
            // from the same origin.
            return site.as_bytes() == b"same-origin" || trusted;
        }
        let Some(origin) = origin else {
            return false;
        };
        trusted || own_origin(request, headers).is_some_and(|own| own == origin)
    }

    /// `None` when the admin token is right, else the refusal to send.
    fn admin_refusal(&self, request: &Parts) -> Option<Response<Bytes>> {
        let Some(expected) = &self.config().admin_token else {
            return Some(error_response(
                ErrorCode::AdminDisabled,
                "the admin API is disabled",
            ));
        };
        let presented = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            None
        } else {
            let mut response =
                error_response(ErrorCode::Unauthorized, "a valid admin token is required");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response)
        }
    }

    async fn admin_user(&self, request: &Parts, user: &str) -> Response<Bytes> {
        if let Some(response) = self.admin_refusal(request) {
            return response;
        }
        let Ok(user) = percent_encoding::percent_decode_str(user).decode_utf8() else {
            return error_response(ErrorCode::BadRequest, "the user id is not UTF-8");
        };
        let result = if request.method == Method::DELETE {
            self.store()
                .logout_all(&user)
                .await
                .map(|n| json!({ "user": user, "revoked": n }))
        } else {
            self.store().devices(&user).await.map(|devices| {
                json!({ "user": user, "sessions": devices.iter().map(|d| device_json(d, None)).collect::<Vec<_>>() })
            })
        };
        match result {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(e @ (crate::Error::InvalidField { .. } | crate::Error::TooLarge { .. })) => {
                error_response(ErrorCode::BadRequest, &e.to_string())
            }
            Err(e) => self.store_error(&e),
        }
    }

    /// `query`, `counts`, `active` and `stats`.
    async fn admin_analytics(&self, request: &Parts, analytics: Analytics) -> Response<Bytes> {
        if let Some(response) = self.admin_refusal(request) {
            return response;
        }
        let query = request.uri.query().unwrap_or("");
        match self.analytics(analytics, query).await {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(AdminError::BadRequest(message)) => error_response(ErrorCode::BadRequest, &message),
            Err(AdminError::Store(crate::Error::InvalidField { name, .. })) => error_response(
                ErrorCode::BadRequest,
                &format!("field {name:?} is not indexed (declare it in SESSION_INDEXES)"),
            ),
            Err(AdminError::Store(e @ crate::Error::TooLarge { .. })) => {
                error_response(ErrorCode::BadRequest, &e.to_string())
            }
            Err(AdminError::Store(e)) => self.store_error(&e),
            Err(AdminError::Encode(e)) => {
                log::error!("edge-session: could not encode an admin answer: {e}");
                error_response(ErrorCode::Internal, "internal error")
            }
        }
    }

    /// Checks the parameters (before any store call), then asks the store.
    async fn analytics(
        &self,
        analytics: Analytics,
        query: &str,
    ) -> std::result::Result<serde_json::Value, AdminError> {
        let store = self.store();
        Ok(match analytics {
            Analytics::Query => {
                let p = Params::read(query, &["field", "value", "cursor", "limit"])?;
                let (field, value) = (p.required("field")?, p.required("value")?);
                let (cursor, limit) = (p.number("cursor", 0)?, p.number("limit", DEFAULT_LIMIT)?);
                serde_json::to_value(store.query(field, value, cursor, limit).await?)?
            }
            Analytics::Counts => {
                let p = Params::read(query, &["field", "top"])?;
                let (field, top) = (p.required("field")?, p.number("top", DEFAULT_TOP)?);
                serde_json::to_value(store.counts(field, top).await?)?
            }
            Analytics::Active => {
                let p = Params::read(query, &["since", "cursor", "limit"])?;
                let since = Duration::from_secs(p.number("since", DEFAULT_SINCE_SECS)?);
                let (cursor, limit) = (p.number("cursor", 0)?, p.number("limit", DEFAULT_LIMIT)?);
                serde_json::to_value(store.active_since(since, cursor, limit).await?)?
            }
            Analytics::Stats => {
                Params::read(query, &[])?;
                serde_json::to_value(store.stats().await?)?
            }
        })
    }
}

/// Default `limit` of the admin `query` and `active` routes.
const DEFAULT_LIMIT: usize = 100;
/// Default `top` of the admin `counts` route.
const DEFAULT_TOP: usize = 20;
/// Default `since` (seconds) of the admin `active` route.
const DEFAULT_SINCE_SECS: u64 = 600;

/// Why an admin analytics call failed.
enum AdminError {
    /// A missing, unknown, repeated or malformed parameter (400).
    BadRequest(String),
    /// The store refused or failed.
    Store(crate::Error),
    /// The answer could not be encoded (500; never expected).
    Encode(serde_json::Error),
}

impl From<crate::Error> for AdminError {
    fn from(e: crate::Error) -> Self {
        AdminError::Store(e)
    }
}

impl From<serde_json::Error> for AdminError {
    fn from(e: serde_json::Error) -> Self {
        AdminError::Encode(e)
    }
}

/// The parameters of an admin query string, decoded by `form_urlencoded`.
struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `query`, refusing names outside `allowed` and repeated names.
    fn read(query: &str, allowed: &[&str]) -> std::result::Result<Self, AdminError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                return Err(AdminError::BadRequest(if allowed.is_empty() {
                    "this route takes no parameters".to_owned()
                } else {
                    format!(
                        "unknown parameter {name:?} (expected {})",
                        allowed.join(", ")
                    )
                }));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(AdminError::BadRequest(format!(
                    "the parameter {name:?} is given twice"
                )));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present.
    fn required(&self, name: &str) -> std::result::Result<&str, AdminError> {
        self.get(name)
            .ok_or_else(|| AdminError::BadRequest(format!("the parameter {name:?} is required")))
    }

    /// An optional whole number, `default` when absent.
    fn number<T: FromStr>(&self, name: &str, default: T) -> std::result::Result<T, AdminError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                AdminError::BadRequest(format!("the parameter {name:?} must be a whole number"))
            }),
        }
    }
}

/// The gateway's own origin as the browser sees it: from an absolute request
/// URI (Workers) or the `Host` header plus `X-Forwarded-Proto` (default https).
fn own_origin(request: &Parts, headers: &HeaderMap) -> Option<String> {
    let uri = &request.uri;
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        return Some(format!("{scheme}://{authority}"));
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("https");
    Some(format!("{scheme}://{host}"))
}
