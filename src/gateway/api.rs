//! The browser API (the signed-in user's own sessions) and the admin API.
//!
//! | route | answer |
//! |---|---|
//! | `GET <prefix>` | the user's own session: `{"id","user","fields","created","last_seen","expires","absolute_expiry"}` |
//! | `GET <prefix>/devices` | `{"sessions": [{"id","created","last_seen","expires","absolute_expiry","user_agent","current"}]}` |
//! | `DELETE <prefix>/devices/{id}` | `{"revoked": true}` (404 when not found) |
//! | `POST <prefix>/logout` | `{"logged_out": 1}`, cookie cleared |
//! | `POST <prefix>/logout-all` | `{"logged_out": n}`, cookie cleared |
//! | `GET <prefix>/admin/users/{user}/sessions` | `{"user", "sessions": [...]}` |
//! | `DELETE <prefix>/admin/users/{user}/sessions` | `{"user", "revoked": n}` |
//! | `GET <prefix>/admin/stats` | `{"active_sessions": n}` |
//!
//! Times are milliseconds since the Unix epoch. State-changing browser calls
//! must be same-origin (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to
//! the gateway's own or a trusted one), else 403 `cross_origin`.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{
    ErrorCode, Gateway, Upstream, append_set_cookie, client_info, error_response, json_response,
};
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
    AdminStats,
}

impl Route<'_> {
    fn methods(&self) -> &'static [Method] {
        match self {
            Route::Session | Route::Devices | Route::AdminStats => &[Method::GET],
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
        ["admin", "stats"] => Route::AdminStats,
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

impl<B: Backend, U: Upstream> Gateway<B, U> {
    pub(super) async fn api(&self, request: Request<Bytes>, rest: &str) -> Response<Bytes> {
        let Some(route) = route(rest) else {
            return error_response(ErrorCode::NotFound, "no such API route");
        };
        if !route.methods().contains(request.method()) {
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
            Route::AdminUserSessions(user) => self.admin_user(&request, user).await,
            Route::AdminStats => self.admin_stats(&request).await,
            route => self.browser(&request, route).await,
        }
    }

    async fn browser(&self, request: &Request<Bytes>, route: Route<'_>) -> Response<Bytes> {
        if request.method() != Method::GET && !self.same_origin(request) {
            return error_response(
                ErrorCode::CrossOrigin,
                "state-changing session calls must come from the same origin",
            );
        }
        let headers = request.headers();
        let cookie = super::cookie_header(headers);
        let session = match self
            .store()
            .begin(cookie.as_deref(), client_info(headers))
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
            Route::Session => self.own_session(&session),
            Route::Devices => match self.store().devices(&user).await {
                Ok(devices) => json_response(
                    StatusCode::OK,
                    &json!({ "sessions": devices.iter().map(|d| device_json(d, Some(&current))).collect::<Vec<_>>() }),
                ),
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
            Route::AdminUserSessions(_) | Route::AdminStats => {
                error_response(ErrorCode::NotFound, "no such API route")
            }
        }
    }

    fn own_session(&self, session: &RequestSession) -> Response<Bytes> {
        let Some(s) = session.session() else {
            return error_response(ErrorCode::Unauthenticated, "not signed in");
        };
        let (fields, _invalid) = s.data();
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
    fn same_origin(&self, request: &Request<Bytes>) -> bool {
        let headers = request.headers();
        if let Some(site) = headers.get("sec-fetch-site") {
            return site.as_bytes() == b"same-origin";
        }
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let origin = origin.trim_end_matches('/');
        own_origin(request, headers).is_some_and(|own| own == origin)
            || self.config().trusted_origins.iter().any(|t| t == origin)
    }

    /// `None` when the admin token is right, else the refusal to send.
    fn admin_refusal(&self, request: &Request<Bytes>) -> Option<Response<Bytes>> {
        let Some(expected) = &self.config().admin_token else {
            return Some(error_response(
                ErrorCode::AdminDisabled,
                "the admin API is disabled",
            ));
        };
        let presented = request
            .headers()
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

    async fn admin_user(&self, request: &Request<Bytes>, user: &str) -> Response<Bytes> {
        if let Some(response) = self.admin_refusal(request) {
            return response;
        }
        let Ok(user) = percent_encoding::percent_decode_str(user).decode_utf8() else {
            return error_response(ErrorCode::BadRequest, "the user id is not UTF-8");
        };
        let result = if request.method() == Method::DELETE {
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

    async fn admin_stats(&self, request: &Request<Bytes>) -> Response<Bytes> {
        if let Some(response) = self.admin_refusal(request) {
            return response;
        }
        match self.store().active_sessions().await {
            Ok(n) => json_response(StatusCode::OK, &json!({ "active_sessions": n })),
            Err(e) => self.store_error(&e),
        }
    }
}

/// The gateway's own origin as the browser sees it: from an absolute request
/// URI (Workers) or the `Host` header plus `X-Forwarded-Proto` (default https).
fn own_origin(request: &Request<Bytes>, headers: &HeaderMap) -> Option<String> {
    let uri = request.uri();
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
