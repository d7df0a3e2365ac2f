// Streaming through the Worker: server-sent events, large downloads and uploads, an instruction on
// a streamed response, WebSockets, an origin dying mid-body, origin timeouts, the three origin
// modes, header values, lifecycle events after the response, and the Worker's CPU per proxied
// body. Each for an anonymous and a signed-in visitor where it matters.
//
// Time-sensitive and small tests go through `wrangler dev` (env.worker), as deployed; large bodies
// go through the Worker straight under workerd (env.workerd.*), without wrangler's proxy, which
// needs seconds of CPU per 64 MiB. Every gateway runs with SESSION_ORIGIN_TIMEOUT_MS =
// env.originTimeoutMs. Figures go to <artifacts>/streaming.json.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

import WebSocket from 'ws';

import { UA, env, recordArtifact, req, signIn, sleep, uniqueUser, whoami } from './lib.mjs';

const MiB = 1024 * 1024;

/** Request headers of a visitor: the user agent, the session cookie if any. */
function visitorHeaders(cookie, extra = {}) {
  return { 'user-agent': UA, ...(cookie ? { cookie } : {}), ...extra };
}

/** An anonymous and a freshly signed-in visitor: `[{name, cookie, user}]`. */
async function visitors(prefix) {
  const user = uniqueUser(prefix);
  return [
    { name: 'anonymous', cookie: undefined, user: null },
    { name: 'signed in', cookie: await signIn(user), user },
  ];
}

/** Whether `chunk` continues the demo origin's pattern (byte i is i % 251) at `offset`. */
function continuesPattern(chunk, offset) {
  let p = offset % 251;
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] !== p) return false;
    p = p === 250 ? 0 : p + 1;
  }
  return true;
}

/** `n` bytes of the pattern. */
function patternBytes(n) {
  const bytes = new Uint8Array(n);
  for (let i = 0, p = 0; i < n; i++, p = p === 250 ? 0 : p + 1) bytes[i] = p;
  return bytes;
}

/**
 * GETs `url` and reads the body as it arrives: `{status, headers, bytes, patternOk, firstMs,
 * lastMs, error}` (times from the request; `error` if the body broke off). `check: false` skips
 * the pattern check (timing runs).
 */
async function download(url, { cookie, headers = {}, check = true } = {}) {
  const t0 = performance.now();
  const res = await fetch(url, { headers: visitorHeaders(cookie, headers) });
  const reader = res.body.getReader();
  let bytes = 0;
  let patternOk = true;
  let firstMs;
  let error;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      firstMs ??= performance.now() - t0;
      if (check && patternOk) patternOk = continuesPattern(value, bytes);
      bytes += value.length;
    }
  } catch (e) {
    error = e;
  }
  return { status: res.status, headers: res.headers, bytes, patternOk, firstMs, lastMs: performance.now() - t0, error };
}

/** Reads server-sent events from `url`: `{status, headers, events: [{atMs, data}], totalMs}`. */
async function readEvents(url, cookie) {
  const t0 = performance.now();
  const res = await fetch(url, { headers: visitorHeaders(cookie) });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      events.push({ atMs: performance.now() - t0, data: JSON.parse(event.replace(/^data: /, '')) });
    }
  }
  return { status: res.status, headers: res.headers, events, totalMs: performance.now() - t0 };
}

/** POSTs `body` (bytes, or a ReadableStream: no Content-Length) to /stream/upload: the origin's JSON. */
async function upload(base, body, cookie) {
  const t0 = performance.now();
  const stream = body instanceof ReadableStream;
  const res = await fetch(`${base}/stream/upload`, {
    method: 'POST',
    headers: visitorHeaders(cookie, { 'content-type': 'application/octet-stream' }),
    body,
    ...(stream ? { duplex: 'half' } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text), ms: performance.now() - t0 };
}

/** `bytes` as a stream of `chunk`-byte pieces, one every `everyMs` (0: as fast as read). */
function pieces(bytes, chunk, everyMs = 0) {
  let offset = 0;
  return new ReadableStream({
    async pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        return;
      }
      if (everyMs > 0 && offset > 0) await sleep(everyMs);
      controller.enqueue(bytes.subarray(offset, offset + chunk));
      offset += chunk;
    },
  });
}

/**
 * A WebSocket to /stream/ws at `base`: the origin's greeting, then a text and a binary message
 * echoed. Answers `{greeting, text, binary, headers}`; rejects after 10 s.
 */
function webSocketEcho(base, cookie) {
  const url = `${base.replace(/^http/, 'ws')}/stream/ws`;
  const binary = Buffer.from(patternBytes(1000));
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: visitorHeaders(cookie) });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no WebSocket echo from ${url} within 10 s`));
    }, 10_000);
    const got = {};
    ws.on('upgrade', (res) => {
      got.headers = res.headers;
    });
    ws.on('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new Error(`WebSocket handshake answered ${res.statusCode}`));
    });
    ws.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ws.on('message', (data, isBinary) => {
      if (got.greeting === undefined) {
        got.greeting = JSON.parse(String(data));
        ws.send('hello through the gateway');
      } else if (got.text === undefined) {
        got.text = isBinary ? null : String(data);
        ws.send(binary);
      } else {
        got.binary = isBinary ? Buffer.from(data).equals(binary) : false;
        clearTimeout(timer);
        ws.close();
        resolve(got);
      }
    });
  });
}

/** One raw HTTP/1.1 exchange (bytes as given, `Connection: close`): the whole answer as a Buffer. */
function rawExchange(base, head) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks = [];
    socket.on('data', (d) => chunks.push(d));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    // A connection reset after an answer (a response cut off): what came is the answer.
    socket.on('error', (e) => (chunks.length > 0 ? resolve(Buffer.concat(chunks)) : reject(e)));
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw exchange timed out')));
    // Half-closed after the request: workerd then closes once it has answered.
    socket.end(head);
  });
}

/**
 * POSTs `total` bytes of the pattern to `path` over a raw connection, in `chunk`-byte pieces:
 * chunked, or with `Content-Length: declared` (default `total`). Stops sending when an answer
 * starts to arrive; with `abortAfter`, drops the connection after that many bytes (an aborted
 * upload). Answers `{answer, sent}` (answer: the bytes that came back, empty if aborted).
 */
function rawUpload(base, path, { total, chunk = 256 * 1024, chunked = false, declared = total, abortAfter, expect = false }) {
  const { hostname, port } = new URL(base);
  const framing = chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${declared}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks = [];
    let sent = 0;
    let answering = false;
    const done = () => resolve({ answer: Buffer.concat(chunks), sent });
    socket.on('data', (d) => {
      // An interim `100 Continue` is no answer yet.
      if (!/^HTTP\/1\.1 100 [^\r]*\r\n\r\n$/.test(d.toString('latin1'))) answering = true;
      chunks.push(d);
    });
    socket.on('end', done);
    socket.on('error', (e) => (chunks.length > 0 ? done() : reject(e)));
    socket.setTimeout(20_000, () => socket.destroy(new Error('raw upload timed out')));
    const write = (data) => new Promise((ok) => (socket.write(data) ? ok() : socket.once('drain', ok)));
    (async () => {
      const extra = expect ? 'Expect: 100-continue\r\n' : '';
      await write(`POST ${path} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\nUser-Agent: ${UA}\r\nContent-Type: application/octet-stream\r\n${extra}${framing}\r\n\r\n`);
      const bytes = patternBytes(total);
      while (sent < total && !answering) {
        if (abortAfter !== undefined && sent >= abortAfter) {
          await sleep(200); // the bytes sent reach the origin first
          socket.destroy();
          done();
          return;
        }
        const piece = bytes.subarray(sent, sent + chunk);
        await write(chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece);
        sent += piece.length;
        await new Promise((r) => setImmediate(r));
      }
      if (chunked && !answering) await write('0\r\n\r\n');
      // Half-closed: workerd closes once it has answered (it keeps the connection otherwise).
      socket.end();
    })().catch(reject);
  });
}

/** The recorder's records of the uploads to `path`, once `count` are there and ended (3 s at most). */
async function recordedUploads(path, count = 1) {
  for (let i = 0; ; i++) {
    const records = await (await fetch(`${env.workerd.recorder}/recorded?path=${encodeURIComponent(path)}`)).json();
    if ((records.length >= count && records.every((r) => r.complete || r.closed)) || i >= 30) return records;
    await sleep(100);
  }
}

/** The raw response's status, header lines `[name, value]` and body (interim 1xx skipped). */
function parseRaw(answer) {
  while (/^HTTP\/1\.1 1\d\d /.test(answer.subarray(0, 13).toString('latin1')) && !answer.subarray(9, 12).equals(Buffer.from('101'))) {
    answer = answer.subarray(answer.indexOf('\r\n\r\n') + 4);
  }
  const end = answer.indexOf('\r\n\r\n');
  const lines = [];
  let start = answer.indexOf('\r\n') + 2;
  while (start < end) {
    const stop = answer.indexOf('\r\n', start);
    const line = answer.subarray(start, stop);
    const colon = line.indexOf(':');
    lines.push([line.subarray(0, colon).toString('latin1').toLowerCase(), line.subarray(colon + 1).toString('latin1').trim()]);
    start = stop + 2;
  }
  let body = answer.subarray(end + 4);
  if (lines.some(([n, v]) => n === 'transfer-encoding' && /chunked/i.test(v))) {
    const parts = [];
    for (let at = 0; ; ) {
      const eol = body.indexOf('\r\n', at);
      const size = parseInt(body.subarray(at, eol).toString('latin1'), 16);
      if (!(size > 0)) break;
      parts.push(body.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  }
  const status = Number(answer.subarray(0, answer.indexOf('\r\n')).toString('latin1').split(' ')[1]);
  return { status, lines, bodyBytes: body, body: body.toString('utf8') };
}

// --- the workerd processes' CPU time ---------------------------------------------------------

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The pid of the workerd process serving `base` (Miniflare passes its socket on argv). */
function workerdPid(base) {
  const needle = `--socket-addr=entry=127.0.0.1:${new URL(base).port}`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(needle)) return Number(entry);
    } catch {
      // a process that ended meanwhile
    }
  }
  throw new Error(`no workerd process serving ${base}`);
}

/** User + system CPU seconds of process `pid` so far. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

const round = (x, digits = 0) => Number(x.toFixed(digits));

// --- the tests -------------------------------------------------------------------------------

test('server-sent events arrive one by one through wrangler dev: 10 events every 300 ms, the first within 1 s', async () => {
  const all = await visitors('sse');
  const results = await Promise.all(
    all.map((v) => readEvents(`${env.worker}/stream/sse?n=10&every_ms=300`, v.cookie)),
  );
  for (const [i, r] of results.entries()) {
    const { name, user } = all[i];
    assert.equal(r.status, 200, name);
    assert.match(r.headers.get('content-type'), /^text\/event-stream/, name);
    assert.deepEqual(r.events.map((e) => e.data.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], name);
    assert.ok(r.events.every((e) => e.data.user === user), `${name}: the origin saw ${user}`);
    const [first, last] = [r.events[0].atMs, r.events.at(-1).atMs];
    assert.ok(first < 1000, `${name}: first event after ${round(first)} ms`);
    // Paced by the origin, not buffered: the stream was open for ~2.7 s after the first event.
    assert.ok(last - first > 2000, `${name}: events spread over ${round(last - first)} ms`);
    const gaps = r.events.slice(1).map((e, k) => e.atMs - r.events[k].atMs);
    assert.ok(gaps.filter((g) => g > 150).length >= 8, `${name}: gaps ${gaps.map((g) => round(g))}`);
  }
  recordArtifact('streaming.json', {
    'SSE first event, wrangler dev, anonymous (ms)': round(results[0].events[0].atMs, 1),
    'SSE first event, wrangler dev, signed in (ms)': round(results[1].events[0].atMs, 1),
  });
});

test('a 64 MiB download arrives whole through workerd, first byte long before the last', async () => {
  for (const { name, cookie } of await visitors('download')) {
    // Paced by the origin (a 64 KiB chunk every 1 ms): the last byte comes > 1 s after the first.
    const r = await download(`${env.workerd.url}/stream/download?bytes=${64 * MiB}&every_ms=1`, { cookie });
    assert.equal(r.status, 200, name);
    assert.equal(r.error, undefined, `${name}: ${r.error}`);
    assert.equal(r.headers.get('content-length'), String(64 * MiB), `${name}: Content-Length kept`);
    assert.equal(r.bytes, 64 * MiB, name);
    assert.ok(r.patternOk, `${name}: every byte as the origin sent it`);
    assert.ok(r.firstMs * 4 < r.lastMs, `${name}: first byte at ${round(r.firstMs)} ms, last at ${round(r.lastMs)} ms`);
    assert.equal(r.headers.get('x-session-id'), null, name);
  }
});

test('a 48 MiB upload reaches the origin whole through workerd (Content-Length and chunked)', async () => {
  const bytes = patternBytes(48 * MiB);
  for (const { name, cookie, user } of await visitors('upload')) {
    for (const [framing, body] of [
      ['Content-Length', bytes],
      ['chunked', pieces(bytes, MiB)],
    ]) {
      const r = await upload(env.workerd.url, body, cookie);
      assert.equal(r.status, 200, `${name}, ${framing}`);
      assert.deepEqual(r.json, { bytes: 48 * MiB, pattern_ok: true, user }, `${name}, ${framing}`);
    }
  }
  // `Expect: 100-continue` (curl sends it for large bodies) is answered by workerd, not passed on
  // (workerd's fetch would hand back the origin's interim 100 as its response).
  for (const base of [env.worker, env.workerd.url]) {
    const r = parseRaw((await rawUpload(base, '/stream/upload', { total: 4 * MiB, expect: true })).answer);
    assert.equal(r.status, 200, `${base}: ${r.body}`);
    assert.deepEqual(JSON.parse(r.body), { bytes: 4 * MiB, pattern_ok: true, user: null }, base);
  }
});

test('an instruction header on a streamed 16 MiB response is applied and never reaches the client', async () => {
  for (const { name, cookie } of await visitors('instruct')) {
    const r = await download(`${env.workerd.url}/stream/download?bytes=${16 * MiB}&chunked=1&instruct=1`, { cookie });
    assert.equal(r.status, 200, name);
    assert.equal(r.bytes, 16 * MiB, name);
    assert.ok(r.patternOk, name);
    assert.equal(r.headers.get('x-session-incr'), null, `${name}: the instruction is not passed on`);
    assert.deepEqual([...r.headers.keys()].filter((h) => h.startsWith('x-session-')), [], name);
    // An anonymous visitor's increment created a session: its cookie came with the head.
    const session = r.headers
      .getSetCookie()
      .map((c) => c.split(';')[0])
      .find((c) => c.startsWith('__Host-session='));
    const visitor = cookie ?? session;
    assert.ok(visitor, `${name}: a session cookie`);
    assert.equal((await whoami(visitor)).data.downloads, 1, `${name}: the increment was stored`);
  }
});

test('WebSocket echo through wrangler dev; the origin sees x-session-user on the handshake', async () => {
  for (const { name, cookie, user } of await visitors('ws')) {
    const r = await webSocketEcho(env.worker, cookie);
    assert.deepEqual(r.greeting, { user }, name);
    assert.equal(r.text, 'hello through the gateway', name);
    assert.ok(r.binary, `${name}: binary message echoed byte for byte`);
    assert.equal(r.headers['x-session-user'], undefined, name);
  }
});

test('an origin dying mid-body ends the response short, never hangs (wrangler dev and workerd)', async () => {
  const get = (encoding) =>
    `GET /stream/broken?bytes=${MiB} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\nAccept-Encoding: ${encoding}\r\n\r\n`;
  for (const base of [env.worker, env.workerd.url]) {
    // Uncompressed, so the framing shows: 2 MiB declared, 1 MiB sent, then the connection ends
    // (rawExchange gives up after 10 s: no hang).
    const raw = parseRaw(await rawExchange(base, get('identity')));
    assert.equal(raw.status, 200, base);
    const declared = raw.lines.find(([n]) => n === 'content-length')?.[1];
    assert.equal(declared, String(2 * MiB), `${base}: the declared length is passed on`);
    assert.ok(raw.bodyBytes.length <= MiB, `${base}: ${raw.bodyBytes.length} bytes of ${declared}`);
    assert.ok(continuesPattern(raw.bodyBytes, 0), base);
  }
  // Compressed (workerd gzips an untyped body for a client that accepts it), the end comes as
  // soon, with less than was declared.
  const gz = parseRaw(await rawExchange(env.workerd.url, get('gzip')));
  assert.equal(gz.status, 200);
  assert.ok(gz.bodyBytes.length < 2 * MiB);
});

test('origin timeouts: no response head within SESSION_ORIGIN_TIMEOUT_MS is 504; a slow upload is not cut', async () => {
  const timeout = env.originTimeoutMs;
  for (const base of [env.worker, env.workerd.url]) {
    const t0 = performance.now();
    const slow = await req(`/stream/slow?ms=${timeout + 3000}`, { base });
    const ms = performance.now() - t0;
    assert.equal(slow.status, 504, base);
    assert.equal(slow.json?.code, 'origin_timeout', base);
    assert.ok(ms > timeout - 100 && ms < timeout + 2000, `${base}: 504 after ${round(ms)} ms`);
    const quick = await req('/stream/slow?ms=200', { base });
    assert.equal(quick.status, 200, base);
    assert.equal(quick.text, 'slow', base);
  }
  // The clock starts once the upload is in: 1.5 x the timeout of uploading, then a quick answer.
  const chunks = 30;
  const bytes = patternBytes(chunks * 64 * 1024);
  const everyMs = Math.ceil((timeout * 1.5) / chunks);
  const r = await upload(env.workerd.url, pieces(bytes, 64 * 1024, everyMs), undefined);
  assert.equal(r.status, 200, `slow upload: ${JSON.stringify(r.json)}`);
  assert.deepEqual(r.json, { bytes: bytes.length, pattern_ok: true, user: null });
  assert.ok(r.ms > timeout, `the upload took ${round(r.ms)} ms`);
});

test('origin modes under workerd: a service binding (ORIGIN_SERVICE) and route mode (own URL)', async () => {
  const user = uniqueUser('modes');
  const cookie = await signIn(user);
  for (const [mode, base] of [
    ['service', env.workerd.service],
    ['route', env.workerd.route],
  ]) {
    const seen = await req('/api/whoami', { base, cookie });
    assert.equal(seen.status, 200, mode);
    assert.equal(seen.json.user, user, `${mode}: the origin saw the session`);
    assert.equal(seen.json.uri, '/api/whoami', mode);
    if (mode === 'service') {
      assert.equal(seen.headers.get('x-origin-worker'), 'service', 'answered by the bound Worker');
      assert.equal(
        seen.headers.get('x-origin-worker-saw-url'),
        `${env.workerd.service}/api/whoami`,
        'the request keeps its own URL',
      );
    }
    const events = await readEvents(`${base}/stream/sse?n=3&every_ms=300`, cookie);
    assert.deepEqual(events.events.map((e) => [e.data.i, e.data.user]), [[0, user], [1, user], [2, user]], mode);
    assert.ok(events.events[0].atMs < 1000 && events.totalMs - events.events[0].atMs > 400, mode);
    const up = await upload(base, patternBytes(4 * MiB), cookie);
    assert.deepEqual(up.json, { bytes: 4 * MiB, pattern_ok: true, user }, mode);
    const down = await download(`${base}/stream/download?bytes=${4 * MiB}`, { cookie });
    assert.ok(down.bytes === 4 * MiB && down.patternOk, mode);
    const ws = await webSocketEcho(base, cookie);
    assert.deepEqual(ws.greeting, { user }, mode);
    assert.ok(ws.text === 'hello through the gateway' && ws.binary, mode);
  }
});

test('SESSION_MAX_BODY_BYTES under workerd: a declared length is refused up front, an undeclared one cut off as it streams', async () => {
  const base = env.workerd.limited;
  const limit = 8 * MiB;
  const id = uniqueUser('limit');
  // Uploads: a declared length over the limit is answered 413 before the origin is called.
  const declared = parseRaw(
    await rawExchange(base, `POST /upload/${id}-declared HTTP/1.1\r\nHost: e2e\r\nContent-Length: ${limit + MiB}\r\n\r\n`),
  );
  assert.equal(declared.status, 413);
  assert.equal(JSON.parse(declared.body).code, 'body_too_large');
  assert.deepEqual(await recordedUploads(`/upload/${id}-declared`, 0), [], 'the origin saw nothing');
  // A chunked upload going past the limit: 413, and the origin sees a broken request, not a
  // (truncated) whole one.
  const over = await rawUpload(base, `/upload/${id}-over`, { total: limit + 2 * MiB, chunked: true });
  const overAnswer = parseRaw(over.answer);
  assert.equal(overAnswer.status, 413, overAnswer.body);
  assert.equal(JSON.parse(overAnswer.body).code, 'body_too_large');
  const [record] = await recordedUploads(`/upload/${id}-over`);
  assert.equal(record.complete, false, `the origin got ${JSON.stringify(record)}`);
  assert.ok(record.bytes <= limit && record.pattern_ok);
  // Under the limit, chunked: whole.
  const under = await upload(base.replace(/\/$/, ''), pieces(patternBytes(4 * MiB), 256 * 1024));
  assert.deepEqual(under.json, { bytes: 4 * MiB, complete: true, pattern_ok: true });
  // Downloads: a declared length over the limit is 502 before any byte; an undeclared one stops
  // at the limit (workerd ends a chunked response cleanly when its body stream errors, so the
  // client sees a short body rather than an error).
  const tooLong = await req(`/stream/download?bytes=${limit + MiB}`, { base });
  assert.equal(tooLong.status, 502);
  assert.equal(tooLong.json?.code, 'origin_response_too_large');
  const cut = await download(`${base}/stream/download?bytes=${limit + MiB}&chunked=1`);
  assert.equal(cut.status, 200);
  assert.ok(cut.bytes <= limit && cut.bytes >= limit - MiB, `${cut.bytes} bytes passed`);
  assert.ok(cut.patternOk);
  const whole = await download(`${base}/stream/download?bytes=${4 * MiB}&chunked=1`);
  assert.ok(whole.bytes === 4 * MiB && whole.patternOk && whole.error === undefined);
  const events = await readEvents(`${base}/stream/sse?n=3&every_ms=200`);
  assert.equal(events.events.length, 3, 'events still stream one by one');
  assert.ok(events.events[0].atMs < 1000 && events.totalMs - events.events[0].atMs > 300);
});

test('a client that aborts its upload aborts the origin request (chunked and Content-Length)', async () => {
  const id = uniqueUser('abort');
  for (const [framing, options] of [
    ['chunked', { total: 4 * MiB, chunked: true, abortAfter: MiB }],
    ['Content-Length', { total: 4 * MiB, abortAfter: MiB }],
  ]) {
    const path = `/upload/${id}-${framing}`;
    await rawUpload(env.workerd.limited, path, options);
    const [record] = await recordedUploads(path);
    assert.ok(record, `${framing}: the upload reached the origin`);
    assert.equal(record.complete, false, `${framing}: the origin got ${JSON.stringify(record)}`);
    assert.ok(record.bytes >= 256 * 1024 && record.bytes <= MiB && record.pattern_ok, framing);
  }
});

test('header values pass as workerd has them, repeated Set-Cookie stay separate', async () => {
  // A request header with UTF-8 bytes and bytes that are not UTF-8: the origin gets the UTF-8
  // bytes as sent, and the rest exactly as from a plain JavaScript Worker (workerd has already
  // replaced them by U+FFFD before any Worker code runs); nothing is dropped.
  const head = Buffer.concat([
    Buffer.from('GET /api/whoami HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\nCookie: a=caf'),
    Buffer.from('é', 'utf8'),
    Buffer.from('; b='),
    Buffer.from([0xe9, 0xff]),
    Buffer.from('\r\n\r\n'),
  ]);
  const cookieSeen = async (base) => JSON.parse(parseRaw(await rawExchange(base, head)).body).cookie_header;
  const [viaGateway, viaPlain] = [await cookieSeen(env.workerd.url), await cookieSeen(env.workerd.plain)];
  assert.ok(viaGateway?.startsWith('a=café; b='), `the origin got ${JSON.stringify(viaGateway)}`);
  assert.equal(viaGateway, viaPlain, 'as through a plain Worker');

  // Response headers: UTF-8 bytes out exactly as the origin sent them; two origin cookies and the
  // session cookie as three Set-Cookie lines; a repeated header as JavaScript joins it.
  const body = JSON.stringify({
    login: uniqueUser('headers'),
    raw: { 'set-cookie': ['a=1; Path=/', 'b=2; Path=/'], 'x-utf8': 'café €', 'x-twice': ['one', 'two'] },
  });
  const answer = await rawExchange(
    env.workerd.url,
    `POST /api/instruct HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  const { lines } = parseRaw(answer);
  const values = (name) => lines.filter(([n]) => n === name).map(([, v]) => v);
  assert.deepEqual(
    values('x-utf8').map((v) => Buffer.from(v, 'latin1')),
    [Buffer.from('café €', 'utf8')],
    'UTF-8 bytes unchanged',
  );
  const cookies = values('set-cookie');
  assert.equal(cookies.length, 4, `Set-Cookie lines: ${cookies.join(' | ')}`);
  assert.deepEqual(cookies.slice(0, 2), ['a=1; Path=/', 'b=2; Path=/']);
  assert.ok(cookies[2].startsWith('__Host-session='));
  assert.ok(cookies[3].startsWith('__Host-session-sync='));
  assert.deepEqual(values('x-twice'), ['one, two']);
});

test('lifecycle events (SESSION_LOG_EVENTS) are logged, as one JSON line each', async () => {
  const user = uniqueUser('events');
  const cookie = await signIn(user, { base: env.workerd.url });
  const handle = (await whoami(cookie, { base: env.workerd.url })).session_id;
  assert.match(handle, /^[0-9a-f]{64}$/);
  let line;
  for (let i = 0; i < 50 && !line; i++) {
    line = readFileSync(env.workerd.log, 'utf8')
      .split('\n')
      .find((l) => l.includes(handle));
    if (!line) await sleep(100);
  }
  assert.ok(line, 'the created event is in the log');
  const event = JSON.parse(line.slice(line.indexOf('{')));
  assert.deepEqual(event, { handle, kind: 'created', source: 'edge-session', user });
});

test('figures: the Worker under workerd vs a plain JavaScript Worker (time to first byte, 64 MiB, CPU)', async () => {
  const gatewayPid = workerdPid(env.workerd.url);
  const plainPid = workerdPid(env.workerd.plain);
  const runs = 3;
  const figures = {};
  const cpuPer = {};
  for (const [name, base, pid] of [
    ['origin alone', env.origin, undefined],
    ['plain JS Worker', env.workerd.plain, plainPid],
    ['gateway Worker', env.workerd.url, gatewayPid],
  ]) {
    await download(`${base}/stream/download?bytes=${MiB}`, { check: false }); // warm
    const cpu0 = pid ? cpuSeconds(pid) : 0;
    const times = [];
    for (let i = 0; i < runs; i++) {
      const r = await download(`${base}/stream/download?bytes=${64 * MiB}`, { check: false });
      assert.equal(r.bytes, 64 * MiB, name);
      times.push(r);
    }
    const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    figures[`64 MiB download, ${name}: total (ms)`] = round(median(times.map((t) => t.lastMs)));
    figures[`64 MiB download, ${name}: first byte (ms)`] = round(median(times.map((t) => t.firstMs)), 1);
    if (pid) {
      cpuPer[name] = (cpuSeconds(pid) - cpu0) / runs;
      figures[`64 MiB download, ${name}: workerd CPU per request (ms)`] = round(cpuPer[name] * 1000);
      const up0 = cpuSeconds(pid);
      const up = await upload(base, patternBytes(48 * MiB));
      assert.equal(up.json.bytes, 48 * MiB, name);
      figures[`48 MiB upload, ${name}: total (ms)`] = round(up.ms);
      figures[`48 MiB upload, ${name}: workerd CPU (ms)`] = round((cpuSeconds(pid) - up0) * 1000);
    }
  }
  const sse = await readEvents(`${env.workerd.url}/stream/sse?n=2&every_ms=100`);
  figures['SSE first event, workerd (ms)'] = round(sse.events[0].atMs, 1);
  const path = recordArtifact('streaming.json', figures);
  for (const [k, v] of Object.entries(figures)) console.log(`${String(v).padStart(8)}  ${k}`);
  console.log(`written to ${path}`);
  // The body never enters wasm: the gateway costs about what a plain Worker does (copying every
  // chunk through wasm, as the `http` feature's Body does, measured 5x).
  assert.ok(
    cpuPer['gateway Worker'] < 2 * cpuPer['plain JS Worker'] + 0.2,
    `CPU per 64 MiB: gateway ${cpuPer['gateway Worker']} s, plain ${cpuPer['plain JS Worker']} s`,
  );
});
