//! Server-rendered HTML. Everything that comes from a visitor goes through [`escape`]; the only
//! script is static text that builds the device list with `textContent`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::session::SessionView;

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1d2430; --muted: #5d6776; --bg: #f5f6f8; --card: #fff;
  --line: #dde1e7; --accent: #2f6feb; --danger: #c93c37; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --muted: #9aa4b2; --bg: #14171c;
  --card: #1d2128; --line: #2e343d; --accent: #5b8ff5; --danger: #ee6b66; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { background: var(--card); border-bottom: 1px solid var(--line); }
header .wrap { display: flex; align-items: center; justify-content: space-between; }
header a { color: inherit; text-decoration: none; font-weight: 600; }
.wrap { max-width: 46rem; margin: 0 auto; padding: 0.9rem 1.2rem; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 1rem 1.2rem; margin: 1rem 0; }
h1 { font-size: 1.4rem; margin: 0.2rem 0 0.6rem; }
h2 { font-size: 1.05rem; margin: 0 0 0.6rem; }
p { margin: 0.4rem 0; }
a { color: var(--accent); }
.muted { color: var(--muted); font-size: 0.9rem; }
code { font-size: 0.85rem; word-break: break-all; }
form.inline { display: inline-flex; gap: 0.5rem; flex-wrap: wrap; align-items: center; margin: 0.3rem 0; }
input[type=text] { font: inherit; padding: 0.35rem 0.6rem; border: 1px solid var(--line);
  border-radius: 6px; background: var(--bg); color: inherit; min-width: 14rem; }
button { font: inherit; white-space: nowrap; padding: 0.35rem 0.9rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); }
button.danger { border-color: var(--danger); background: transparent; color: var(--danger); }
button:disabled { opacity: 0.5; cursor: default; }
.counter { font-size: 2rem; font-weight: 700; margin-right: 0.8rem; font-variant-numeric: tabular-nums; }
ul.cart { margin: 0.3rem 0 0.6rem; padding-left: 1.3rem; }
.error { color: var(--danger); }
table { width: 100%; border-collapse: collapse; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.45rem 0.4rem; border-bottom: 1px solid var(--line); vertical-align: top; }
tr.current td { font-weight: 600; }
.badge { display: inline-block; white-space: nowrap; padding: 0.05rem 0.5rem; border-radius: 999px; font-size: 0.8rem;
  background: var(--accent); color: #fff; }
"#;

/// A whole page around `body`.
fn layout(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title} · edge-session demo</title>
<style>{STYLE}</style>
</head>
<body>
<header><div class="wrap"><a href="/" id="home-link" data-testid="home-link">edge-session demo</a>
<a href="/devices" id="devices-link" data-testid="devices-link">Devices</a></div></header>
<main class="wrap">
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
    )
}

/// The home page: who you are, the counter, the cart.
pub(crate) fn home(session: &SessionView) -> String {
    let mut body = String::new();

    body.push_str("<section id=\"account\">\n");
    match &session.user {
        Some(user) => {
            let _ = write!(
                body,
                r#"<h1>Signed in as <span id="user-name" data-testid="user-name">{}</span></h1>
<form class="inline" method="post" action="/logout">
<button type="submit" class="secondary" id="sign-out" data-testid="sign-out">Sign out</button>
</form>
"#,
                escape(user)
            );
        }
        None => body.push_str(
            r#"<h1>Welcome</h1>
<p>You are not signed in. Any name will do: this demo has no passwords.</p>
<form class="inline" method="post" action="/login">
<input type="text" name="username" id="sign-in-username" data-testid="sign-in-username"
  placeholder="username" maxlength="64" required autocomplete="username">
<button type="submit" id="sign-in-button" data-testid="sign-in-button">Sign in</button>
</form>
"#,
        ),
    }
    let state = match (&session.id, &session.user) {
        (None, _) => "none",
        (Some(_), None) => "anonymous",
        (Some(_), Some(_)) => "signed-in",
    };
    let _ = write!(
        body,
        r#"<p class="muted" id="session-status" data-testid="session-status" data-state="{state}">"#
    );
    match &session.id {
        Some(id) => {
            let kind = if session.user.is_some() {
                "Session"
            } else {
                "Anonymous session"
            };
            let _ = write!(
                body,
                r#"{kind} <code id="session-id" data-testid="session-id">{}</code>"#,
                escape(id)
            );
        }
        None => body.push_str("No session yet: the first change creates one."),
    }
    body.push_str("</p>\n</section>\n");

    let _ = write!(
        body,
        r#"<section id="counter">
<h2>Counter</h2>
<form class="inline" method="post" action="/counter">
<span class="counter" id="counter-value" data-testid="counter-value">{}</span>
<button type="submit" id="counter-increment" data-testid="counter-increment">+1</button>
</form>
<p class="muted">Atomic increment in Redis (<code>x-session-incr</code>).</p>
</section>
"#,
        session.counter()
    );

    let cart = session.cart();
    body.push_str("<section id=\"cart\">\n<h2>Cart</h2>\n");
    if session.data_omitted {
        body.push_str(
            r#"<p class="error" id="data-omitted" data-testid="data-omitted">The session data is too large to show here.</p>"#,
        );
        body.push('\n');
    }
    let _ = write!(
        body,
        r#"<ul class="cart" id="cart-items" data-testid="cart-items" data-count="{}">"#,
        cart.len()
    );
    for item in &cart {
        let text = match item {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let _ = write!(
            body,
            "\n<li data-testid=\"cart-item\">{}</li>",
            escape(&text)
        );
    }
    body.push_str("\n</ul>\n");
    if cart.is_empty() {
        body.push_str(
            r#"<p class="muted" id="cart-empty" data-testid="cart-empty">Your cart is empty.</p>"#,
        );
        body.push('\n');
    }
    body.push_str(
        r#"<form class="inline" method="post" action="/cart/add">
<input type="text" name="item" id="cart-item-input" data-testid="cart-item-input"
  placeholder="item" maxlength="100" required>
<button type="submit" id="cart-add" data-testid="cart-add">Add</button>
</form>
<form class="inline" method="post" action="/cart/clear">
<button type="submit" class="secondary" id="cart-clear" data-testid="cart-clear">Clear cart</button>
</form>
<p class="muted">Kept when you sign in: the session is regenerated, its data carried over.</p>
</section>
"#,
    );

    layout("Home", &body)
}

/// The device list: rendered by the inline script from `GET /_session/devices`.
pub(crate) fn devices(session: &SessionView) -> String {
    let Some(user) = &session.user else {
        return layout(
            "Devices",
            r#"<section>
<h1>Devices</h1>
<p id="devices-signed-out" data-testid="devices-signed-out">You are not signed in, so there are no devices to list.</p>
<p><a href="/" id="devices-home" data-testid="devices-home">Back to the home page</a></p>
</section>
"#,
        );
    };
    let body = format!(
        r#"<section>
<h1>Devices of <span id="user-name" data-testid="user-name">{user}</span></h1>
<p class="muted">Every live session of this account. Revoking one signs that device out at its next request.</p>
<p id="devices-status" data-testid="devices-status" role="status">Loading…</p>
<noscript><p class="error">This page needs JavaScript to list devices.</p></noscript>
<table>
<thead><tr><th>Device</th><th>Signed in</th><th>Last seen</th><th>Expires</th><th></th></tr></thead>
<tbody id="devices-list" data-testid="devices-list" data-state="loading"></tbody>
</table>
</section>
<section>
<button type="button" class="danger" id="sign-out-everywhere" data-testid="sign-out-everywhere">Sign out everywhere</button>
<form class="inline" method="post" action="/logout">
<button type="submit" class="secondary" id="sign-out" data-testid="sign-out">Sign out</button>
</form>
</section>
<script>{DEVICES_SCRIPT}</script>
"#,
        user = escape(user),
    );
    layout("Devices", &body)
}

/// A short page for a refused form (bad input, cross-site post).
pub(crate) fn message(title: &str, text: &str) -> String {
    let body = format!(
        r#"<section>
<h1>{title}</h1>
<p class="error" id="error" data-testid="error">{text}</p>
<p><a href="/" id="back-link" data-testid="back-link">Back to the home page</a></p>
</section>
"#,
        title = escape(title),
        text = escape(text),
    );
    layout(title, &body)
}

/// Static: it interpolates nothing, and writes server data only through `textContent` and
/// attributes.
const DEVICES_SCRIPT: &str = r#"
(function () {
  'use strict';
  var list = document.getElementById('devices-list');
  var status = document.getElementById('devices-status');
  var everywhere = document.getElementById('sign-out-everywhere');

  function when(ms) {
    return typeof ms === 'number' ? new Date(ms).toLocaleString() : '-';
  }
  function show(state, text) {
    list.setAttribute('data-state', state);
    status.textContent = text;
    status.className = state === 'error' ? 'error' : '';
  }
  function cell(text) {
    var td = document.createElement('td');
    td.textContent = text;
    return td;
  }
  function row(s) {
    var id = String(s.id);
    var tr = document.createElement('tr');
    tr.setAttribute('data-testid', 'device-row');
    tr.setAttribute('data-session-id', id);
    tr.setAttribute('data-current', s.current ? 'true' : 'false');
    if (s.current) tr.className = 'current';
    tr.appendChild(cell(s.user_agent ? String(s.user_agent) : 'Unknown device'));
    tr.appendChild(cell(when(s.created)));
    tr.appendChild(cell(when(s.last_seen)));
    tr.appendChild(cell(when(s.expires)));
    var action = document.createElement('td');
    if (s.current) {
      var badge = document.createElement('span');
      badge.className = 'badge';
      badge.setAttribute('data-testid', 'device-current');
      badge.textContent = 'This device';
      action.appendChild(badge);
    } else {
      var button = document.createElement('button');
      button.type = 'button';
      button.className = 'danger';
      button.setAttribute('data-testid', 'device-revoke');
      button.setAttribute('data-session-id', id);
      button.textContent = 'Revoke';
      button.addEventListener('click', function () { revoke(id, button); });
      action.appendChild(button);
    }
    tr.appendChild(action);
    return tr;
  }
  async function load() {
    show('loading', 'Loading…');
    var res;
    try {
      res = await fetch('/_session/devices', { headers: { accept: 'application/json' }, cache: 'no-store' });
    } catch (e) {
      show('error', 'Could not reach the session API.');
      return;
    }
    if (res.status === 401) {
      list.replaceChildren();
      show('error', 'Your session has ended. Sign in again.');
      return;
    }
    if (!res.ok) {
      show('error', 'The session API answered ' + res.status + '.');
      return;
    }
    var body;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!body || !Array.isArray(body.sessions)) {
      show('error', 'The session API answered something unexpected.');
      return;
    }
    list.replaceChildren.apply(list, body.sessions.map(row));
    var n = body.sessions.length;
    show('ready', n === 1 ? '1 active session.' : n + ' active sessions.');
  }
  async function revoke(id, button) {
    button.disabled = true;
    try {
      var res = await fetch('/_session/devices/' + encodeURIComponent(id), { method: 'DELETE' });
      if (!res.ok && res.status !== 404) {
        button.disabled = false;
        show('error', 'Revoking failed (' + res.status + ').');
        return;
      }
    } catch (e) {
      button.disabled = false;
      show('error', 'Could not reach the session API.');
      return;
    }
    await load();
  }
  everywhere.addEventListener('click', async function () {
    everywhere.disabled = true;
    try {
      var res = await fetch('/_session/logout-all', { method: 'POST' });
      if (res.ok || res.status === 401) {
        window.location.assign('/');
        return;
      }
      show('error', 'Signing out everywhere failed (' + res.status + ').');
    } catch (e) {
      show('error', 'Could not reach the session API.');
    }
    everywhere.disabled = false;
  });
  load();
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn the_script_holds_no_closing_tag() {
        assert!(!DEVICES_SCRIPT.contains("</"));
    }
}
