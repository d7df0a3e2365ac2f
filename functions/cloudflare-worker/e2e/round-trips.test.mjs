// Round trips to the store per gateway request type, counted as HTTP requests at the REST
// endpoint (upstash-local's /__stats), through the Worker under workerd. The tests run one file at
// a time (scripts/e2e-worker passes --test-concurrency=1), so nothing else talks to the endpoint.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { countTrips, env, instruct, recordArtifact, req, signIn, uniqueUser } from './lib.mjs';

const sameOrigin = { 'sec-fetch-site': 'same-origin' };
const admin = { authorization: `Bearer ${env.adminToken}` };

/** Every request type once, so each Lua script is loaded (NOSCRIPT -> EVAL happens once per server). */
async function warmUp() {
  const user = uniqueUser('warm');
  const created = await instruct({ set: { a: 1 } });
  const anon = created.session.pair;
  await req('/', { cookie: anon });
  const login = await instruct({ login: user }, { cookie: anon });
  const cookie = login.session.pair;
  const other = await signIn(user);
  await instruct({ set: { b: 2 }, incr: { n: 1 } }, { cookie });
  await req('/_session', { cookie });
  await req('/_session/devices', { cookie });
  const { id } = (await req('/_session', { cookie: other })).json;
  await req(`/_session/devices/${id}`, { method: 'DELETE', cookie, headers: sameOrigin });
  await req('/_session/admin/stats', { headers: admin });
  await req(`/_session/admin/users/${user}/sessions`, { headers: admin });
  await instruct({ logout: 'current' }, { cookie });
  const again = await signIn(user);
  await req('/_session/logout-all', { method: 'POST', cookie: again, headers: sameOrigin });
  await req(`/_session/admin/users/${user}/sessions`, { method: 'DELETE', headers: admin });
}

test('round trips per gateway request type (warm scripts)', async (t) => {
  await warmUp();
  const user = uniqueUser('rt');
  const measured = {};
  const expected = {}; // the README's guarantees, per gateway request (read, then apply)
  // The e2e Worker slides on every read (touch interval 0): a signed-in read
  // that writes nothing is one HGETALL plus the due slide in ctx.waitUntil.
  const measure = async (name, want, fn) => {
    const { result, trips } = await countTrips(fn);
    measured[name] = trips;
    expected[name] = want;
    t.diagnostic(`${String(trips).padStart(2)} round trip(s): ${name}`);
    return result;
  };

  await measure('anonymous page (no cookie)', 0, () => req('/'));
  await measure('request with a tampered cookie', 0, () =>
    req('/', { cookie: '__Host-session=k1.00.AAAA.BBBB' }));
  const skipCookie = await signIn(uniqueUser('skip'));
  await measure('skip path (/health) with a cookie', 0, () => req('/health', { cookie: skipCookie }));

  const first = await measure('first write of an anonymous visitor (create)', 1, () =>
    instruct({ set: { cart: ['tea'] } }));
  const anon = first.session.pair;
  await measure('anonymous session read (+ its due slide)', 2, () => req('/', { cookie: anon }));
  const login = await measure('login of an anonymous session (read + regenerate)', 2, () =>
    instruct({ login: user }, { cookie: anon }));
  const cookie = login.session.pair;
  await measure('login without a cookie', 1, () => instruct({ login: user }));
  await measure('signed-in read (HGETALL + the due slide after the response)', 2, () => req('/', { cookie }));
  await measure('signed-in read + write (x-session-set/-incr)', 2, () =>
    instruct({ set: { theme: 'dark' }, incr: { n: 1 } }, { cookie }));
  await measure('signed-in request, origin sends nothing (+ its due slide)', 2, () => instruct({}, { cookie }));
  await measure('GET /_session (+ its due slide)', 2, () => req('/_session', { cookie }));
  await measure('GET /_session/devices (read + list + its due slide)', 3, () => req('/_session/devices', { cookie }));
  await measure('admin GET stats', 1, () => req('/_session/admin/stats', { headers: admin }));
  await measure('admin GET user sessions', 1, () =>
    req(`/_session/admin/users/${user}/sessions`, { headers: admin }));
  await measure('logout via the origin (load + logout)', 2, () =>
    instruct({ logout: 'current' }, { cookie }));
  const again = await signIn(user);
  await measure('POST /_session/logout-all (load + logout)', 2, () =>
    req('/_session/logout-all', { method: 'POST', cookie: again, headers: sameOrigin }));
  await measure('refused CSRF call', 0, () =>
    req('/_session/logout-all', { method: 'POST', cookie: again, headers: { 'sec-fetch-site': 'cross-site' } }));

  const path = recordArtifact('round-trips.json', measured);
  t.diagnostic(`written to ${path}`);
  assert.deepEqual(measured, expected);
});
