// Helpers of the end-to-end tests: the environment scripts/e2e-worker sets up, fetch with manual
// cookies, the REST endpoint's request counter and the test's own redis-server.

import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

function need(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests with scripts/e2e-worker`);
  }
  return value;
}

export const env = {
  /** The Worker signing with k1. */
  worker: need('E2E_WORKER_URL'),
  /** A second Worker over the same store, signing with k2 and still accepting k1. */
  rotated: need('E2E_WORKER_ROTATED_URL'),
  /** The primary Worker as a browser should open it (localhost: a potentially trustworthy origin). */
  browserUrl: need('E2E_BROWSER_URL'),
  origin: need('E2E_ORIGIN_URL'),
  restUrl: need('E2E_REST_URL'),
  restToken: need('E2E_REST_TOKEN'),
  redisPort: need('E2E_REDIS_PORT'),
  adminToken: need('E2E_ADMIN_TOKEN'),
  idleTtlMs: Number(need('E2E_IDLE_TTL_MS')),
  artifacts: need('E2E_ARTIFACTS_DIR'),
  chromium: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
  /** SESSION_ORIGIN_TIMEOUT_MS of every gateway. */
  originTimeoutMs: Number(need('E2E_ORIGIN_TIMEOUT_MS')),
  /** The built Worker straight under workerd (e2e/workerd.mjs), signing with k1 like `worker`. */
  workerd: {
    /** ORIGIN_URL = the demo origin; SESSION_LOG_EVENTS=true. */
    url: need('E2E_WORKERD_URL'),
    /** ORIGIN_SERVICE: a service binding to a JavaScript Worker in front of the demo origin. */
    service: need('E2E_WORKERD_SERVICE_URL'),
    /** Route mode: the request's own URL (rewritten to the demo origin's, as on a route). */
    route: need('E2E_WORKERD_ROUTE_URL'),
    /** A plain JavaScript pass-through Worker to the demo origin, for comparison. */
    plain: need('E2E_WORKERD_PLAIN_URL'),
    /** SESSION_MAX_BODY_BYTES = 8 MiB, in front of the recorder. */
    limited: need('E2E_WORKERD_LIMITED_URL'),
    /** The limited gateway's origin: records how each upload ended (e2e/workerd.mjs). */
    recorder: need('E2E_RECORDER_URL'),
    /** Everything the workerd instances printed (console.log of the Workers). */
    log: need('E2E_WORKERD_LOG'),
  },
};

export const COOKIE = '__Host-session';
export const UA = 'edge-session-e2e/1';

/**
 * One request to a Worker: never follows redirects, sends `cookie` (a `name=value` pair) when
 * given. `body` objects are sent as JSON. Answers `{status, headers, text, json, setCookies,
 * session}` where `session` is the parsed `__Host-session` Set-Cookie, if any.
 */
export async function req(path, { base = env.worker, method = 'GET', cookie, headers = {}, body } = {}) {
  const h = { 'user-agent': UA, ...headers };
  if (cookie) h.cookie = cookie;
  let payload = body;
  if (body !== undefined && typeof body !== 'string') {
    payload = JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, { method, headers: h, body: payload, redirect: 'manual' });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const setCookies = res.headers.getSetCookie();
  const session = setCookies.map(parseSetCookie).find((c) => c.name === COOKIE);
  return { status: res.status, headers: res.headers, text, json, setCookies, session };
}

/** `name=value; Attr; Attr=v` -> `{name, value, pair, attrs: {lowercased attr: value|true}}`. */
export function parseSetCookie(header) {
  const [first, ...rest] = header.split(';');
  const eq = first.indexOf('=');
  const name = first.slice(0, eq).trim();
  const value = first.slice(eq + 1).trim();
  const attrs = {};
  for (const part of rest) {
    const i = part.indexOf('=');
    const key = (i < 0 ? part : part.slice(0, i)).trim().toLowerCase();
    if (key) attrs[key] = i < 0 ? true : part.slice(i + 1).trim();
  }
  return { name, value, pair: `${name}=${value}`, attrs, raw: header };
}

/** `POST /api/instruct`: the demo origin answers with these session instructions. */
export function instruct(instructions, opts = {}) {
  return req('/api/instruct', { ...opts, method: 'POST', body: instructions });
}

/** What the origin saw: `{session_id, user, data, session_headers, cookie_header, ...}`. */
export async function whoami(cookie, opts = {}) {
  const r = await req('/api/whoami', { ...opts, cookie });
  if (r.status !== 200) throw new Error(`whoami: HTTP ${r.status} ${r.text}`);
  return r.json;
}

/** Signs `user` in (a fresh session unless `cookie` is given); answers the cookie pair. */
export async function signIn(user, opts = {}) {
  const r = await instruct({ login: user }, opts);
  if (r.status !== 200 || !r.session) throw new Error(`login: HTTP ${r.status} ${r.text}`);
  return r.session.pair;
}

let userSeq = 0;
/** A user id no other test uses. */
export function uniqueUser(prefix = 'user') {
  userSeq += 1;
  return `${prefix}-${process.pid}-${userSeq}-${Date.now().toString(36)}`;
}

// --- the REST endpoint's counters (upstash-local --enable-faults) ---------------------------

async function control(path, method = 'GET') {
  const res = await fetch(env.restUrl + path, {
    method,
    headers: { authorization: `Bearer ${env.restToken}` },
  });
  if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

/** HTTP requests the REST endpoint has received (every route). */
export async function restRequests() {
  return (await control('/__stats')).requests;
}

/** Runs `fn` and answers `{result, trips}`: the REST requests made meanwhile. */
export async function countTrips(fn) {
  const before = await restRequests();
  const result = await fn();
  const trips = (await restRequests()) - before;
  return { result, trips };
}

// --- the test's own redis-server ------------------------------------------------------------

export function redis(...args) {
  return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', env.redisPort, ...args], {
    encoding: 'utf8',
  }).trim();
}

/** PTTL of a key in milliseconds (-2: no key, -1: no expiry). */
export function pttl(key) {
  return Number(redis('PTTL', key));
}

/**
 * The Redis key of a signed-in session: `es:s:{<user tag>}<handle>`. The user tag is the
 * cookie's second part, the handle the `x-session-id` the origin sees.
 */
export function sessionKey(cookiePair, handle) {
  const value = cookiePair.slice(cookiePair.indexOf('=') + 1);
  const tag = value.split('.')[1];
  return tag ? `es:s:{${tag}}${handle}` : `es:s:{${handle}}`;
}

// --- artifacts ------------------------------------------------------------------------------

/** Merges `entries` into `<artifacts>/<file>` (a JSON object). */
export function recordArtifact(file, entries) {
  const path = join(env.artifacts, file);
  const current = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : {};
  writeFileSync(path, JSON.stringify({ ...current, ...entries }, null, 2) + '\n');
  return path;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
