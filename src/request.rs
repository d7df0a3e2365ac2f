//! The session of one request: load it from the cookie, change it, commit it.
//!
//! ```no_run
//! # async fn handler<B: edge_session::Backend>(
//! #     store: &edge_session::SessionStore<B>,
//! #     cookie_header: Option<&str>,
//! # ) -> edge_session::Result<()> {
//! use edge_session::ClientInfo;
//!
//! // No cookie (or a bad one): no Redis call. A valid cookie: one HGETALL.
//! let mut session = store.begin(cookie_header, ClientInfo::default()).await?;
//! let visits: i64 = session.get("visits")?.unwrap_or(0);
//! session.changes().incr("visits", 1)?;
//! // One round trip writes the changed fields (nothing at all if nothing
//! // changed, but the slide the read found due, at most once per touch
//! // interval; `commit_deferred` hands that back to run after the response).
//! let commit = store.commit(session).await?;
//! if let Some(set_cookie) = commit.set_cookie {
//!     // add a `Set-Cookie: {set_cookie}` header to the response
//! #   let _ = (set_cookie, visits);
//! }
//! # Ok(()) }
//! ```
//!
//! Round trips: `begin` costs 0 without a valid cookie and 1 with one;
//! `commit` costs 0 when nothing changed (a visitor who stores nothing gets no
//! session and no cookie), 1 for writes, logout, logout-all and login (2 for a
//! login that moves a session across Redis Cluster slots).
//!
//! # Read-your-writes on replicated Upstash
//!
//! A global Upstash database answers reads from a replica that may lag behind
//! the primary, unless the request carries an `upstash-sync-token` at least as
//! recent as the writes it must see. So that a login is never followed by a
//! "not signed in" read on another instance, the token travels with the user:
//!
//! - [`SessionStore::commit`]: when the commit wrote to a store that issues
//!   sync tokens (the REST backend), [`Commit::sync_cookie`] is a `Set-Cookie`
//!   value for the **sync cookie**: named after the session cookie with
//!   `-sync` appended (`__Host-session-sync` by default), with the same
//!   attributes, holding the newest token, and short-lived
//!   ([`SYNC_COOKIE_MAX_AGE_SECS`]: replicas catch up long before);
//! - [`SessionStore::begin`]: the token from that cookie is sent with this
//!   request's store calls, so the replica serving them waits until it has the
//!   user's writes. The token is this request's own
//!   ([`SyncToken`]): concurrent requests sharing
//!   one backend never mix their tokens.
//!
//! The token is not a secret and is not signed: a forged one can only delay
//! the forger's own reads. Values that are not plain cookie text, or longer
//! than 256 bytes, are ignored. The direct backend issues no tokens, so it
//! never sets the cookie.

use crate::backend::{Backend, SyncToken};
use crate::cookie::{SameSitePolicy, SessionHandle, SessionToken};
use crate::error::{Error, Result};
use crate::session::{Applied, Changes, ClientInfo, Session};
use crate::store::{SessionStore, Touch};

/// What a request asked for at logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logout {
    /// Destroy this session.
    Current,
    /// Destroy every session of this session's user.
    All,
}

/// The session state of one request, between [`SessionStore::begin`] and
/// [`SessionStore::commit`].
#[derive(Debug)]
pub struct RequestSession {
    token: Option<SessionToken>,
    needs_resign: bool,
    session: Option<Session>,
    changes: Changes,
    login: Option<String>,
    logout: Option<Logout>,
    client: ClientInfo,
    sync: SyncToken,
    /// The read found a slide due.
    slide_due: bool,
}

impl RequestSession {
    /// True when the read found a slide due (at most once per touch interval
    /// per session): [`SessionStore::commit`] runs it (in the write, or on
    /// its own), [`SessionStore::commit_deferred`] hands it back in
    /// [`Commit::touch`] to run after the response.
    pub fn slide_due(&self) -> bool {
        self.slide_due && self.session.is_some()
    }

    /// The due slide, to run with [`SessionStore::touch`], for a request that
    /// is not committed (e.g. a read-only API answer).
    pub fn touch(&self) -> Option<Touch> {
        match (&self.token, self.slide_due()) {
            (Some(token), true) => Some(Touch {
                token: token.clone(),
                sync: self.sync.clone(),
            }),
            _ => None,
        }
    }

    /// The live session, if the request carried a valid cookie of one.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The bound user, if any.
    pub fn user(&self) -> Option<&str> {
        self.session.as_ref().and_then(Session::user)
    }

    /// The session's handle, if there is a live session.
    pub fn handle(&self) -> Option<&SessionHandle> {
        self.session.as_ref().map(Session::handle)
    }

    /// Decodes a field of the loaded session (`Ok(None)` when absent or anonymous).
    pub fn get<T: serde::de::DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
        match &self.session {
            Some(s) => s.get(field),
            None => Ok(None),
        }
    }

    /// The changes to commit; add to them.
    pub fn changes(&mut self) -> &mut Changes {
        &mut self.changes
    }

    /// Signs `user` in on commit (with session regeneration).
    pub fn login(&mut self, user: impl Into<String>) {
        self.login = Some(user.into());
    }

    /// Signs out on commit.
    pub fn logout(&mut self, scope: Logout) {
        self.logout = Some(scope);
    }

    /// The client info recorded for new sessions.
    pub fn client(&self) -> &ClientInfo {
        &self.client
    }
}

/// What [`SessionStore::commit`] did. Its `Debug` leaves the cookie values
/// out (they carry the signed token).
#[derive(Clone, Default)]
pub struct Commit {
    /// A `Set-Cookie` header value to send, if the cookie changed (new
    /// session, re-signed with a newer key, or cleared).
    pub set_cookie: Option<String>,
    /// The write, if one happened.
    pub applied: Option<Applied>,
    /// The session after the commit, if there is one.
    pub handle: Option<SessionHandle>,
    /// The user the session is bound to after the commit.
    pub user: Option<String>,
    /// How many sessions a logout destroyed.
    pub destroyed: u64,
    /// A `Set-Cookie` header value for the sync cookie, after a write to a
    /// store that issues sync tokens (see the module docs).
    pub sync_cookie: Option<String>,
    /// From [`SessionStore::commit_deferred`]: a slide the read found due,
    /// when the commit did not write (a write slides itself); run it after
    /// the response with [`SessionStore::touch`], so the reply does not wait
    /// for it. Always `None` from [`SessionStore::commit`], which runs it.
    pub touch: Option<Touch>,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |cookie: &Option<String>| cookie.as_ref().map(|_| "<redacted>");
        f.debug_struct("Commit")
            .field("set_cookie", &shown(&self.set_cookie))
            .field("applied", &self.applied)
            .field("handle", &self.handle)
            .field("user", &self.user)
            .field("destroyed", &self.destroyed)
            .field("sync_cookie", &shown(&self.sync_cookie))
            .field("touch", &self.touch)
            .finish()
    }
}

impl<B: Backend> SessionStore<B> {
    /// [`Self::begin`] without the sync token.
    async fn begin_unsynced(
        &self,
        cookie_header: Option<&str>,
        client: ClientInfo,
    ) -> Result<RequestSession> {
        let verified = cookie_header.and_then(|h| self.cookies().from_header(h));
        let mut slide_due = false;
        let (token, needs_resign, session) = match verified {
            Some(v) => {
                let (loaded, due) = self.read_live(&v.token).await?;
                slide_due = due;
                match self.check_binding(loaded, &client) {
                    // Bound elsewhere: an anonymous visitor, who can neither
                    // use nor end that session, and whose cookie is left alone.
                    (_, true) => (None, false, None),
                    (session, false) => (Some(v.token), v.needs_resign, session),
                }
            }
            None => (None, false, None),
        };
        Ok(RequestSession {
            token,
            needs_resign,
            session,
            changes: Changes::new(),
            login: None,
            logout: None,
            client,
            sync: SyncToken::default(),
            slide_due,
        })
    }

    /// [`Self::commit`] without the sync token.
    async fn commit_unsynced(&self, request: RequestSession) -> Result<Commit> {
        let touch = request.touch();
        let RequestSession {
            mut token,
            needs_resign,
            mut session,
            changes,
            login,
            logout,
            client,
            sync: _,
            slide_due: _,
        } = request;
        let mut commit = Commit::default();
        let presented_cookie = token.is_some();
        // A user id the login would refuse fails the commit before anything
        // runs (not after a logout asked in the same commit).
        if let Some(user) = &login {
            self.check_new_user(user)?;
        }

        if let Some(scope) = logout {
            if let Some(t) = token.take() {
                commit.destroyed = match (scope, session.as_ref().and_then(Session::user)) {
                    (Logout::All, Some(user)) => self.logout_all(user).await?,
                    _ => u64::from(self.destroy(&t).await?),
                };
            }
            session = None;
            if login.is_none() {
                commit.set_cookie = presented_cookie.then(|| self.cookies().clear_cookie());
                return Ok(commit);
            }
        }

        let live = token.as_ref().filter(|_| session.is_some());
        if let Some(user) = login {
            let (new_token, applied) = self.login(live, &user, &changes, &client).await?;
            return Ok(self.issued(commit, new_token, applied, Some(user)));
        }

        let user = session.as_ref().and_then(|s| s.user.clone());
        match (live, changes.is_empty()) {
            (Some(t), false) => match self.apply(t, &changes).await {
                Ok(applied) => {
                    if needs_resign {
                        commit.set_cookie = Some(self.cookie_for(t, &applied));
                    }
                    commit.handle = Some(t.handle());
                    commit.user = user;
                    commit.applied = Some(applied);
                    Ok(commit)
                }
                // The session died between load and write. It is never
                // resurrected: the data goes to a fresh anonymous session,
                // unless the write was conditional on the old one.
                Err(Error::SessionGone) if changes.expect_version.is_none() => {
                    let (t, applied) = self.create(None, &changes, &client).await?;
                    Ok(self.issued(commit, t, applied, None))
                }
                Err(e) => Err(e),
            },
            (None, false) => {
                if changes.expect_version.is_some() {
                    return Err(Error::SessionGone);
                }
                let (t, applied) = self.create(None, &changes, &client).await?;
                Ok(self.issued(commit, t, applied, None))
            }
            (Some(t), true) => {
                if let (true, Some(s)) = (needs_resign, &session) {
                    let secs = s.loaded_at().until(s.absolute_expiry()).as_secs();
                    commit.set_cookie = Some(self.cookies().set_cookie(t, secs));
                }
                commit.handle = Some(t.handle());
                commit.user = user;
                commit.touch = touch;
                Ok(commit)
            }
            (None, true) => {
                // A valid cookie whose session is gone: tell the browser to drop it.
                if presented_cookie {
                    commit.set_cookie = Some(self.cookies().clear_cookie());
                }
                Ok(commit)
            }
        }
    }

    fn cookie_for(&self, token: &SessionToken, applied: &Applied) -> String {
        let secs = applied.now.until(applied.absolute_expiry).as_secs();
        self.cookies().set_cookie(token, secs)
    }

    fn issued(
        &self,
        mut commit: Commit,
        token: SessionToken,
        applied: Applied,
        user: Option<String>,
    ) -> Commit {
        commit.set_cookie = Some(self.cookie_for(&token, &applied));
        commit.handle = Some(token.handle());
        commit.user = user;
        commit.applied = Some(applied);
        commit
    }
}

/// `Max-Age` of the sync cookie, in seconds.
pub const SYNC_COOKIE_MAX_AGE_SECS: u64 = 60;

/// Longest sync token carried in the cookie.
const MAX_SYNC_TOKEN_BYTES: usize = 256;

/// True for a token that can travel as a cookie value unquoted.
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_SYNC_TOKEN_BYTES
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(&b))
}

impl<B: Backend> SessionStore<B> {
    /// Starts a request: verifies the session cookie in `cookie_header` (pure
    /// computation) and, only when it is valid, reads the session with one
    /// plain `HGETALL` (a due slide is left to [`Self::commit`] or
    /// [`Commit::touch`]), sending the sync token of the user's last write
    /// (see the module docs).
    pub async fn begin(
        &self,
        cookie_header: Option<&str>,
        client: ClientInfo,
    ) -> Result<RequestSession> {
        let sync = SyncToken::new(cookie_header.and_then(|h| self.sync_cookie_token(h)));
        let mut request = sync
            .scope(self.begin_unsynced(cookie_header, client))
            .await?;
        request.sync = sync;
        Ok(request)
    }

    /// Applies what the request did to its session, in at most one round trip
    /// (see the module docs), and says which cookies to send. A slide the
    /// read found due runs here too when nothing was written (a write slides
    /// itself): one more round trip, at most once per touch interval per
    /// session, so a session that is only read still slides. A failed slide
    /// is logged, not an error (the next read finds it still due).
    /// [`Self::commit_deferred`] hands it back instead, to run after the
    /// response.
    pub async fn commit(&self, request: RequestSession) -> Result<Commit> {
        let mut commit = self.commit_deferred(request).await?;
        if let Some(touch) = commit.touch.take() {
            let sync = touch.sync.clone();
            let before = sync.get();
            match self.touch(touch).await {
                Err(e) => log::warn!("edge-session: the slide of a read session failed: {e}"),
                Ok(()) => match sync.get() {
                    Some(token) if Some(&token) != before.as_ref() => {
                        commit.sync_cookie = self.sync_set_cookie(&token);
                    }
                    _ => {}
                },
            }
        }
        Ok(commit)
    }

    /// [`Self::commit`] without the due slide: it comes back in
    /// [`Commit::touch`], for the caller to run with [`Self::touch`] once the
    /// response is on its way (the gateway does).
    pub async fn commit_deferred(&self, request: RequestSession) -> Result<Commit> {
        let sync = request.sync.clone();
        let before = sync.get();
        let mut commit = sync.scope(self.commit_unsynced(request)).await?;
        match sync.get() {
            Some(token) if Some(&token) != before.as_ref() => {
                commit.sync_cookie = self.sync_set_cookie(&token);
            }
            _ => {}
        }
        Ok(commit)
    }

    /// The name of the sync cookie: the session cookie's name plus `-sync`.
    pub fn sync_cookie_name(&self) -> String {
        format!("{}-sync", self.cookies().config().name)
    }

    /// The sync token in the sync cookie of a `Cookie` request header.
    fn sync_cookie_token(&self, header: &str) -> Option<String> {
        let name = self.sync_cookie_name();
        cookie::Cookie::split_parse(header)
            .filter_map(std::result::Result::ok)
            .find(|c| c.name() == name && cookie_safe(c.value()))
            .map(|c| c.value().to_owned())
    }

    /// A `Set-Cookie` value carrying `token` in the sync cookie, with the
    /// session cookie's attributes.
    fn sync_set_cookie(&self, token: &str) -> Option<String> {
        if !cookie_safe(token) {
            log::warn!("edge-session: a sync token unfit for a cookie was not carried");
            return None;
        }
        let config = self.cookies().config();
        let mut cookie = cookie::Cookie::new(self.sync_cookie_name(), token.to_owned());
        cookie.set_path(config.path.clone());
        cookie.set_secure(config.secure);
        cookie.set_http_only(config.http_only);
        cookie.set_same_site(match config.same_site {
            SameSitePolicy::Strict => cookie::SameSite::Strict,
            SameSitePolicy::Lax => cookie::SameSite::Lax,
            SameSitePolicy::None => cookie::SameSite::None,
        });
        if let Some(domain) = &config.domain {
            cookie.set_domain(domain.clone());
        }
        let secs = i64::try_from(SYNC_COOKIE_MAX_AGE_SECS).unwrap_or(i64::MAX);
        cookie.set_max_age(cookie::time::Duration::seconds(secs));
        Some(cookie.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_debug_hides_the_cookies() {
        let commit = Commit {
            set_cookie: Some("__Host-session=k1..c2VjcmV0.c2ln; Path=/".to_owned()),
            sync_cookie: Some("__Host-session-sync=token".to_owned()),
            ..Commit::default()
        };
        let shown = format!("{commit:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("token"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }
}
