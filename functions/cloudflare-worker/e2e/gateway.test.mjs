// The session gateway as a Cloudflare Worker under workerd (wrangler dev), over HTTP, with the
// demo origin behind it and upstash-local + redis-server as the store. Run by scripts/e2e-worker.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  COOKIE,
  UA,
  countTrips,
  env,
  instruct,
  parseSetCookie,
  pttl,
  redis,
  req,
  sessionKey,
  signIn,
  sleep,
  uniqueUser,
  whoami,
} from './lib.mjs';

const sameOrigin = { 'sec-fetch-site': 'same-origin' };
const admin = { authorization: `Bearer ${env.adminToken}` };

/** The parts of a cookie value: kid, user tag, secret, signature. */
function parts(pair) {
  const [kid, tag, secret, signature] = pair.slice(pair.indexOf('=') + 1).split('.');
  return { kid, tag, secret, signature };
}

function assertNoSessionHeaders(headers) {
  const leaked = [...headers.keys()].filter((name) => name.startsWith('x-session-'));
  assert.deepEqual(leaked, [], 'no x-session-* header reaches the browser');
}

test('anonymous requests make no Redis call and set no cookie', async () => {
  const { result, trips } = await countTrips(async () => [
    await req('/'),
    await req('/devices'),
    await req('/api/whoami'),
    await instruct({}),
    await req('/health'),
    await req('/static/hello.txt'),
  ]);
  assert.equal(trips, 0, 'REST requests made by anonymous traffic');
  for (const r of result) {
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.setCookies, [], 'no Set-Cookie for an anonymous visitor');
  }
  const me = result[2].json;
  assert.equal(me.session_id, null);
  assert.equal(me.user, null);
  assert.deepEqual(me.session_headers, {});
  assert.match(result[0].text, /data-testid="sign-in-button"/);
});

test('login via x-session-login sets a __Host- cookie: Secure, HttpOnly, SameSite=Lax, Path=/', async () => {
  const user = uniqueUser('alice');
  const r = await instruct({ login: user });
  assert.equal(r.status, 200);
  assertNoSessionHeaders(r.headers);
  assert.ok(r.session, `a ${COOKIE} cookie is set: ${r.setCookies}`);
  const { attrs } = r.session;
  assert.equal(attrs.secure, true, 'Secure');
  assert.equal(attrs.httponly, true, 'HttpOnly');
  assert.equal(String(attrs.samesite).toLowerCase(), 'lax', 'SameSite=Lax');
  assert.equal(attrs.path, '/', 'Path=/');
  assert.equal(attrs.domain, undefined, 'no Domain on a __Host- cookie');
  const maxAge = Number(attrs['max-age']);
  assert.ok(maxAge > 0 && maxAge <= 86400, `Max-Age up to the absolute expiry: ${maxAge}`);
  const { kid, tag, secret, signature } = parts(r.session.pair);
  assert.equal(kid, 'k1');
  assert.match(tag, /^[0-9a-f]{32}$/, 'user tag');
  assert.match(secret, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  assert.match(signature, /^[A-Za-z0-9_-]{43}$/, 'HMAC-SHA256, base64url');

  const me = await whoami(r.session.pair);
  assert.equal(me.user, user);
  assert.match(me.session_id, /^[0-9a-f]{64}$/);
  assert.equal(me.session_headers['x-session-user'], user);
  assert.equal(me.cookie_header, null, 'the session token never reaches the origin');

  // The demo's sign-in form: a 303 back home with the cookie, then the page shows the user.
  const form = await req('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `username=${encodeURIComponent(user)}`,
  });
  assert.equal(form.status, 303);
  assert.equal(form.headers.get('location'), '/');
  assert.ok(form.session);
  const home = await req('/', { cookie: form.session.pair });
  assert.match(home.text, new RegExp(`data-testid="user-name">${user}<`));
});

test('a tampered, forged or unknown-key cookie is anonymous, with no Redis call', async () => {
  const good = await signIn(uniqueUser('eve'));
  const { kid, tag, secret, signature } = parts(good);
  const flip = (s) => s.slice(0, -1) + (s.endsWith('A') ? 'B' : 'A');
  const otherSecret = Buffer.alloc(32, 7).toString('base64url');
  const variants = {
    'signature changed': `${COOKIE}=${kid}.${tag}.${secret}.${flip(signature)}`,
    'secret changed': `${COOKIE}=${kid}.${tag}.${flip(secret)}.${signature}`,
    'user tag changed': `${COOKIE}=${kid}.${'0'.repeat(32)}.${secret}.${signature}`,
    'another secret, old signature': `${COOKIE}=${kid}.${tag}.${otherSecret}.${signature}`,
    'unknown key id': `${COOKIE}=k9.${tag}.${secret}.${signature}`,
    'no signature': `${COOKIE}=${kid}.${tag}.${secret}`,
    garbage: `${COOKIE}=not-a-cookie`,
    'empty value': `${COOKIE}=`,
  };
  for (const [what, cookie] of Object.entries(variants)) {
    const { result, trips } = await countTrips(() => req('/api/whoami', { cookie }));
    assert.equal(result.status, 200, what);
    assert.equal(trips, 0, `${what}: no Redis call`);
    assert.equal(result.json.user, null, `${what}: anonymous`);
    assert.equal(result.json.session_id, null, `${what}: no session`);
    assert.equal(result.session, undefined, `${what}: no session cookie set`);
  }
  // The browser API agrees.
  const api = await req('/_session', { cookie: variants['signature changed'] });
  assert.equal(api.status, 401);
  assert.deepEqual(api.json, { error: 'not signed in', code: 'unauthenticated' });
  // And the genuine cookie is untouched by all that.
  assert.notEqual((await whoami(good)).user, null);
});

test('sliding idle expiry: each signed-in request moves it forward, the absolute one stays', async () => {
  const cookie = await signIn(uniqueUser('sam'));
  const me = await whoami(cookie);
  const key = sessionKey(cookie, me.session_id);
  assert.equal(redis('EXISTS', key), '1', `session key ${key}`);
  const first = (await req('/_session', { cookie })).json;
  const ttl0 = pttl(key);
  assert.ok(ttl0 > env.idleTtlMs - 3000 && ttl0 <= env.idleTtlMs, `fresh PTTL ${ttl0}`);

  await sleep(2000);
  const ttlIdle = pttl(key);
  assert.ok(ttlIdle <= ttl0 - 1500, `PTTL runs down while idle: ${ttl0} -> ${ttlIdle}`);
  const second = (await req('/_session', { cookie })).json;
  // The slide runs in ctx.waitUntil, after the response: wait for it.
  let ttl1 = pttl(key);
  for (let i = 0; i < 50 && ttl1 < ttlIdle + 1500; i++) {
    await sleep(20);
    ttl1 = pttl(key);
  }
  assert.ok(ttl1 >= ttlIdle + 1500, `a request slides PTTL forward: ${ttlIdle} -> ${ttl1}`);
  // A read reports the expiry it found; its due slide runs after the
  // response, so the next read reports the moved one.
  const third = (await req('/_session', { cookie })).json;
  assert.ok(third.expires >= first.expires + 1500, `expires moves: ${first.expires} -> ${third.expires}`);
  assert.ok(third.expires - third.last_seen <= env.idleTtlMs);
  assert.equal(third.absolute_expiry, first.absolute_expiry, 'the absolute expiry never moves');
  assert.equal(second.absolute_expiry, first.absolute_expiry, 'the absolute expiry never moves');
  assert.equal(third.created, first.created);
  // The user's device set carries a TTL too.
  const deviceTtl = pttl(`es:u:{${parts(cookie).tag}}`);
  assert.ok(deviceTtl > 0, `device set TTL ${deviceTtl}`);
});

test('x-session-set and x-session-incr persist, and login keeps the data', async () => {
  // A visitor's first write creates an anonymous session.
  const first = await instruct({ set: { cart: ['tea'], theme: 'dark' }, incr: { n: 2 } });
  assert.equal(first.status, 200);
  assertNoSessionHeaders(first.headers);
  assert.ok(first.session, 'the first write sets a cookie');
  const anon = first.session.pair;
  assert.equal(parts(anon).tag, '', 'an anonymous session has no user tag');

  const second = await instruct(
    { set: { theme: null, note: 'ünïcode ✓' }, incr: { n: 3 } },
    { cookie: anon },
  );
  assert.equal(second.status, 200);
  assert.equal(second.session, undefined, 'same session, same cookie');
  let me = await whoami(anon);
  assert.deepEqual(me.data, { cart: ['tea'], n: 5, note: 'ünïcode ✓' });
  assert.match(me.session_headers['x-session-data'], /^[\x20-\x7e]*$/, 'x-session-data is ASCII');

  // The demo's forms: counter and cart.
  for (let i = 0; i < 2; i++) {
    const r = await req('/counter', { method: 'POST', cookie: anon, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    assert.equal(r.status, 303);
  }
  const add = await req('/cart/add', {
    method: 'POST',
    cookie: anon,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'item=coffee',
  });
  assert.equal(add.status, 303);
  const home = await req('/', { cookie: anon });
  assert.match(home.text, /data-testid="counter-value">2</);
  assert.match(home.text, /data-testid="cart-items" data-count="2"/);

  // Login regenerates the session (fixation defence) and keeps its data.
  const user = uniqueUser('kim');
  const login = await instruct({ login: user }, { cookie: anon });
  assert.ok(login.session, 'a new cookie on login');
  assert.notEqual(parts(login.session.pair).secret, parts(anon).secret, 'a new token');
  me = await whoami(login.session.pair);
  assert.equal(me.user, user);
  assert.deepEqual(me.data, { cart: ['tea', 'coffee'], counter: 2, n: 5, note: 'ünïcode ✓' });
  const old = await whoami(anon);
  assert.equal(old.session_id, null, 'the pre-login token is dead');
});

test('logout (current) and logout-all, through the origin and the browser API', async () => {
  const user = uniqueUser('olga');
  const laptop = await signIn(user);
  const phone = await signIn(user);
  const tablet = await signIn(user);
  const desktop = await signIn(user);

  const out = await instruct({ logout: 'current' }, { cookie: laptop });
  assert.equal(out.status, 200);
  assert.equal(out.session?.attrs['max-age'], '0', 'the cookie is cleared');
  assert.equal((await whoami(laptop)).user, null, 'the laptop is signed out');
  assert.equal((await whoami(phone)).user, user, 'the phone is still signed in');

  const apiOut = await req('/_session/logout', { method: 'POST', cookie: desktop, headers: sameOrigin });
  assert.equal(apiOut.status, 200);
  assert.deepEqual(apiOut.json, { logged_out: 1 });
  assert.equal(apiOut.session?.attrs['max-age'], '0');
  assert.equal((await whoami(desktop)).user, null);

  // Two cookies of the same user left: logout-all from one signs out both.
  const all = await req('/_session/logout-all', { method: 'POST', cookie: phone, headers: sameOrigin });
  assert.equal(all.status, 200, all.text);
  assert.deepEqual(all.json, { logged_out: 2 });
  assert.equal(all.session?.attrs['max-age'], '0');
  assert.equal((await whoami(phone)).user, null);
  assert.equal((await whoami(tablet)).user, null, 'the other device is signed out too');
  const listed = await req(`/_session/admin/users/${encodeURIComponent(user)}/sessions`, { headers: admin });
  assert.deepEqual(listed.json.sessions, []);

  // The origin's `x-session-logout: all` does the same.
  const a = await signIn(user);
  const b = await signIn(user);
  const viaOrigin = await instruct({ logout: 'all' }, { cookie: a });
  assert.equal(viaOrigin.session?.attrs['max-age'], '0');
  assert.equal((await whoami(b)).user, null);
});

test('a rotated key still verifies, and the cookie is re-signed with the new key', async () => {
  const user = uniqueUser('rita');
  const old = await signIn(user); // primary Worker: k1
  assert.equal(parts(old).kid, 'k1');
  const before = await whoami(old);

  // The rotated Worker (SESSION_SECRETS=k2:...,k1:...) accepts k1 and re-signs with k2.
  const r = await req('/api/whoami', { base: env.rotated, cookie: old });
  assert.equal(r.status, 200);
  assert.equal(r.json.user, user, 'the k1 cookie still verifies');
  assert.equal(r.json.session_id, before.session_id, 'the same session');
  assert.ok(r.session, 're-signed cookie set');
  const fresh = parts(r.session.pair);
  assert.equal(fresh.kid, 'k2');
  assert.equal(fresh.tag, parts(old).tag);
  assert.equal(fresh.secret, parts(old).secret, 'same token, new signature');
  assert.notEqual(fresh.signature, parts(old).signature);
  assert.equal(r.session.attrs.secure, true);
  assert.equal(r.session.attrs.httponly, true);

  const again = await req('/api/whoami', { base: env.rotated, cookie: r.session.pair });
  assert.equal(again.json.user, user);
  assert.equal(again.session, undefined, 'a cookie signed with the first key is not re-signed');

  // A Worker that does not know k2 yet treats it as any unknown key: anonymous, no Redis call.
  const { result, trips } = await countTrips(() => whoami(r.session.pair));
  assert.equal(result.user, null);
  assert.equal(trips, 0);
});

test('spoofed x-session-* request headers never reach the origin', async () => {
  const spoof = {
    'x-session-id': 'f'.repeat(64),
    'x-session-user': 'root',
    'x-session-data': '{"admin":true}',
    'x-session-data-omitted': '12',
    'x-session-login': 'root',
    'x-session-set': '{"admin":true}',
    // CGI-style servers read these as x-session-user / x-session-id.
    x_session_user: 'root',
    'x_session-id': 'f'.repeat(64),
  };
  const { result: anon, trips } = await countTrips(() => req('/api/whoami', { headers: spoof }));
  assert.equal(trips, 0);
  assert.deepEqual(anon.json.session_headers, {}, 'all stripped for an anonymous visitor');
  assert.equal(anon.json.user, null);
  assert.equal(anon.session, undefined, 'a request header is no login instruction');

  const user = uniqueUser('sid');
  const cookie = await signIn(user);
  const real = await whoami(cookie);
  const signedIn = await req('/api/whoami', {
    cookie: `theme=dark; ${cookie}; b=2`,
    headers: spoof,
  });
  const h = signedIn.json.session_headers;
  assert.equal(h['x-session-user'], user);
  assert.equal(h['x-session-id'], real.session_id);
  assert.equal(h['x-session-data'], '{}');
  assert.deepEqual(Object.keys(h).sort(), ['x-session-data', 'x-session-id', 'x-session-user']);
  assert.equal(signedIn.json.cookie_header, 'theme=dark; b=2', 'other cookies pass, the token does not');

  // The skip paths get no session headers either.
  const skipped = await req('/static/hello.txt', { headers: spoof, cookie });
  assert.equal(skipped.text, 'hello');

  // The origin's x-session-* response headers are applied and stripped, never shown to the browser.
  const r = await instruct({ incr: { n: 1 }, raw: { 'x-session-foo': 'bar' } }, { cookie });
  assert.equal(r.status, 200);
  assertNoSessionHeaders(r.headers);
});

test('CSRF: state-changing browser API calls must be same-origin', async () => {
  const user = uniqueUser('csrf');
  const cookie = await signIn(user);
  const { id } = (await req('/_session', { cookie })).json;
  const refused = [
    ['POST', '/_session/logout-all', { 'sec-fetch-site': 'cross-site' }],
    ['POST', '/_session/logout-all', { 'sec-fetch-site': 'same-site' }],
    ['POST', '/_session/logout-all', { 'sec-fetch-site': 'none' }],
    ['POST', '/_session/logout-all', {}], // no Origin, no Sec-Fetch-Site (what Node's fetch sends)
    ['POST', '/_session/logout-all', { origin: 'http://evil.example' }],
    ['POST', '/_session/logout-all', { origin: 'null' }],
    ['POST', '/_session/logout-all', { origin: env.worker, 'sec-fetch-site': 'cross-site' }],
    ['POST', '/_session/logout', { 'sec-fetch-site': 'cross-site' }],
    ['DELETE', `/_session/devices/${id}`, { 'sec-fetch-site': 'cross-site' }],
  ];
  for (const [method, path, headers] of refused) {
    const { result, trips } = await countTrips(() => req(path, { method, cookie, headers }));
    const what = `${method} ${path} ${JSON.stringify(headers)}`;
    assert.equal(result.status, 403, what);
    assert.deepEqual(result.json, {
      error: 'state-changing session calls must come from the same origin',
      code: 'cross_origin',
    }, what);
    assert.equal(trips, 0, `${what}: refused before any Redis call`);
    assert.equal(result.session, undefined, `${what}: cookie untouched`);
  }
  assert.equal((await whoami(cookie)).user, user, 'still signed in after the refusals');
  // Reads are not state-changing.
  const read = await req('/_session', { cookie, headers: { 'sec-fetch-site': 'cross-site' } });
  assert.equal(read.status, 200);
  // The gateway's own origin (a browser without Sec-Fetch-Site) is accepted.
  const ok = await req('/_session/logout-all', { method: 'POST', cookie, headers: { origin: env.worker } });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json, { logged_out: 1 });
});

test('admin API: bearer token required; user sessions, revoke, stats', async () => {
  const stats = '/_session/admin/stats';
  for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Basic ${env.adminToken}` }, { authorization: `Bearer ${env.adminToken}x` }]) {
    const r = await req(stats, { headers });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(r.json.code, 'unauthorized');
    assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  }
  const denied = await req('/_session/admin/users/x/sessions', { method: 'DELETE' });
  assert.equal(denied.status, 401);

  const user = uniqueUser('José%');
  const path = `/_session/admin/users/${encodeURIComponent(user)}/sessions`;
  const before = (await req(stats, { headers: admin })).json.active_sessions;
  assert.equal(typeof before, 'number');
  const a = await signIn(user);
  const b = await signIn(user);
  const during = (await req(stats, { headers: admin })).json.active_sessions;
  assert.equal(during, before + 2, 'active sessions count the new ones');

  const listed = await req(path, { headers: admin });
  assert.equal(listed.status, 200, listed.text);
  assert.equal(listed.json.user, user);
  assert.equal(listed.json.sessions.length, 2);
  for (const s of listed.json.sessions) {
    assert.match(s.id, /^[0-9a-f]{64}$/);
    assert.equal(s.user_agent, UA);
    assert.ok(s.expires > s.last_seen && s.absolute_expiry >= s.expires);
  }
  const revoked = await req(path, { method: 'DELETE', headers: admin });
  assert.deepEqual(revoked.json, { user, revoked: 2 });
  assert.equal((await whoami(a)).user, null);
  assert.equal((await whoami(b)).user, null);
  assert.equal((await req(stats, { headers: admin })).json.active_sessions, before);

  // Error JSON for unknown routes and methods.
  const missing = await req('/_session/admin/nothing', { headers: admin });
  assert.equal(missing.status, 404);
  assert.equal(missing.json.code, 'not_found');
  const method = await req(stats, { method: 'POST', headers: admin });
  assert.equal(method.status, 405);
  assert.equal(method.headers.get('allow'), 'GET');
});

test('browser API: own session, device list, revoke another device', async () => {
  const user = uniqueUser('dev');
  const laptop = await signIn(user);
  const phone = await signIn(user);
  const own = await req('/_session', { cookie: laptop });
  assert.equal(own.status, 200);
  assert.equal(own.json.user, user);
  assert.equal(own.headers.get('cache-control'), 'no-store');
  const phoneId = (await whoami(phone)).session_id;

  const devices = await req('/_session/devices', { cookie: laptop });
  assert.equal(devices.status, 200);
  assert.equal(devices.json.sessions.length, 2);
  assert.deepEqual(
    devices.json.sessions.map((s) => [s.id, s.current]).sort(),
    [[own.json.id, true], [phoneId, false]].sort(),
  );

  const revoke = await req(`/_session/devices/${phoneId}`, { method: 'DELETE', cookie: laptop, headers: sameOrigin });
  assert.equal(revoke.status, 200, revoke.text);
  assert.deepEqual(revoke.json, { revoked: true });
  assert.equal((await whoami(phone)).user, null, 'the phone is signed out');
  assert.equal((await whoami(laptop)).user, user, 'the laptop is not');
  const again = await req(`/_session/devices/${phoneId}`, { method: 'DELETE', cookie: laptop, headers: sameOrigin });
  assert.equal(again.status, 404);
  assert.equal(again.json.code, 'not_found');

  const anonymous = await req('/_session/devices');
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.json.code, 'unauthenticated');
});

test('store outage: signed-in requests get 503 store_unavailable with Retry-After, anonymous ones still work', async () => {
  const cookie = await signIn(uniqueUser('out'));
  const faults = (body) =>
    fetch(`${env.restUrl}/__faults`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.restToken}` },
      body: JSON.stringify(body),
    }).then((r) => r.json());
  await faults({ mode: 'status', status: 503 });
  try {
    const r = await req('/', { cookie });
    assert.equal(r.status, 503, r.text);
    assert.deepEqual(r.json, { error: 'the session store is unavailable', code: 'store_unavailable' });
    assert.equal(r.headers.get('retry-after'), '5');
    const anon = await req('/');
    assert.equal(anon.status, 200, 'an anonymous page needs no store');
  } finally {
    await faults({ mode: 'clear' });
  }
  assert.equal((await req('/', { cookie })).status, 200, 'back once the store is');
});

test('two x-session-login headers, joined by the Workers Headers API, are refused with nothing applied', async () => {
  const r = await instruct({ raw: { 'x-session-login': ['alice', 'bob'] } });
  assert.equal(r.status, 502);
  assert.equal(r.json.code, 'bad_session_instruction');
  assert.equal(r.session, undefined, 'no session cookie');
});

test('a Set-Cookie of the origin passes through next to the session cookie', async () => {
  const r = await instruct({ login: uniqueUser('both'), raw: { 'set-cookie': 'theme=dark; Path=/' } });
  const names = r.setCookies.map((c) => parseSetCookie(c).name).sort();
  // The session cookie, the sync cookie (the REST store's sync token for the next request) and the origin's.
  assert.deepEqual(names, [COOKIE, `${COOKIE}-sync`, 'theme'].sort());
});
