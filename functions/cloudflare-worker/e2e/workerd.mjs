// functions/cloudflare-worker/e2e/workerd.mjs: the built Worker straight under workerd (through
// Miniflare, without wrangler dev's proxy and Node process in front, which are slow for large
// bodies), in each origin mode, plus a plain JavaScript pass-through Worker for comparison.
// Started by scripts/e2e-worker; runs until SIGTERM / SIGINT.
//
// Instances, each on a port of its own:
//   url      ORIGIN_URL = the demo origin (large bodies, timeouts, the CPU measurement)
//   service  ORIGIN_SERVICE = ORIGIN, a service binding to a small JavaScript Worker that forwards
//            to the demo origin and marks its responses (x-origin-worker: service)
//   route    no ORIGIN_URL / ORIGIN_SERVICE: the request's own URL. Miniflare's `upstream`
//            rewrites each request's URL to the demo origin's, as Cloudflare gives a Worker on a
//            route its zone's URL
//   plain    a plain JavaScript Worker passing requests to the demo origin
//   limited  SESSION_MAX_BODY_BYTES = 8 MiB; ORIGIN_URL = the recorder below
// and, in this Node process, the recorder: an origin that records how each upload it gets ends
// (whole, or broken off), for the tests of aborted and over-limit uploads:
//   POST <any path>          reads the body: {"bytes", "complete", "pattern_ok"}, and records it
//   GET /recorded?path=P     the records of the uploads to P: [{"bytes", "complete", "pattern_ok",
//                            "closed"}] (closed: the request is over, whole or not)
//   GET <anything else>      passed on to the demo origin (status, headers, streamed body)
//
// Each instance is a workerd process of its own (its CPU time can be read apart).
//
// Environment: E2E_WORKERD_PORTS (six free ports, comma-separated, in the order above, the
// recorder's last),
// ORIGIN_URL, UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN, SESSION_SECRETS, ADMIN_TOKEN,
// WORKER_SHIM (the built shim.mjs), COMPATIBILITY_DATE, and optional extra vars for the gateways
// as E2E_WORKERD_VARS (a JSON object). Prints `workerd ready` once every instance answers.
import { Miniflare } from 'miniflare';
import http from 'node:http';
import path from 'node:path';

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`workerd.mjs: ${name} is not set`);
  return value;
};

const ports = need('E2E_WORKERD_PORTS').split(',').map(Number);
if (ports.length !== 6 || ports.some((p) => !(p > 0))) {
  throw new Error('workerd.mjs: E2E_WORKERD_PORTS must be six ports');
}
const [urlPort, servicePort, routePort, plainPort, limitedPort, recorderPort] = ports;
const origin = need('ORIGIN_URL');
const shim = need('WORKER_SHIM');
const build = path.resolve(path.dirname(shim), '..');
const compatibilityDate = need('COMPATIBILITY_DATE');

const vars = {
  UPSTASH_REDIS_REST_URL: need('UPSTASH_REDIS_REST_URL'),
  UPSTASH_REDIS_REST_TOKEN: need('UPSTASH_REDIS_REST_TOKEN'),
  SESSION_SECRETS: need('SESSION_SECRETS'),
  ADMIN_TOKEN: need('ADMIN_TOKEN'),
  ...JSON.parse(process.env.E2E_WORKERD_VARS || '{}'),
};

// The built Worker with `bindings` on top of `vars`.
const gateway = (name, port, bindings, extra = {}) => ({
  name,
  modules: true,
  scriptPath: shim,
  modulesRoot: build,
  modulesRules: [
    { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
    { type: 'CompiledWasm', include: ['**/*.wasm'] },
  ],
  compatibilityDate,
  bindings: { ...vars, ...bindings },
  ...extra,
  port,
});

// The recorder (see above).
const recorded = new Map();
const recorder = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://recorder');
  if (req.method === 'POST') {
    const record = { bytes: 0, complete: false, pattern_ok: true };
    recorded.set(url.pathname, [...(recorded.get(url.pathname) ?? []), record]);
    req.on('data', (chunk) => {
      for (let i = 0; i < chunk.length && record.pattern_ok; i++) {
        if (chunk[i] !== (record.bytes + i) % 251) record.pattern_ok = false;
      }
      record.bytes += chunk.length;
    });
    req.on('end', () => {
      record.complete = true;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(record));
    });
    req.on('error', () => {});
    req.on('close', () => {
      record.closed = true;
    });
    return;
  }
  if (url.pathname === '/recorded') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(recorded.get(url.searchParams.get('path')) ?? []));
    return;
  }
  try {
    const answer = await fetch(origin + req.url, { headers: { 'user-agent': 'recorder' } });
    const headers = Object.fromEntries(answer.headers);
    delete headers['content-encoding'];
    res.writeHead(answer.status, headers);
    if (answer.body) for await (const chunk of answer.body) res.write(chunk);
    res.end();
  } catch {
    res.destroy();
  }
});
await new Promise((resolve) => recorder.listen(recorderPort, '127.0.0.1', resolve));
const recorderUrl = `http://127.0.0.1:${recorderPort}`;

const instances = [
  new Miniflare({ host: '127.0.0.1', ...gateway('url', urlPort, { ORIGIN_URL: origin }) }),
  new Miniflare({
    host: '127.0.0.1',
    port: servicePort,
    workers: [
      gateway('service', servicePort, { ORIGIN_SERVICE: 'ORIGIN' }, {
        serviceBindings: { ORIGIN: 'origin-worker' },
      }),
      {
        name: 'origin-worker',
        modules: true,
        compatibilityDate,
        bindings: { ORIGIN_URL: origin },
        script: `export default {
          async fetch(request, env) {
            const url = new URL(request.url);
            const response = await fetch(env.ORIGIN_URL + url.pathname + url.search, request);
            if (response.webSocket) return response;
            const headers = new Headers(response.headers);
            headers.set('x-origin-worker', 'service');
            headers.set('x-origin-worker-saw-url', request.url);
            return new Response(response.body, { status: response.status, headers });
          },
        };`,
      },
    ],
  }),
  new Miniflare({ host: '127.0.0.1', upstream: origin, ...gateway('route', routePort, {}) }),
  new Miniflare({
    host: '127.0.0.1',
    port: plainPort,
    modules: true,
    compatibilityDate,
    bindings: { ORIGIN_URL: origin },
    script: `export default {
      async fetch(request, env) {
        const url = new URL(request.url);
        return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
      },
    };`,
  }),
  new Miniflare({
    host: '127.0.0.1',
    ...gateway('limited', limitedPort, {
      ORIGIN_URL: recorderUrl,
      SESSION_MAX_BODY_BYTES: String(8 * 1024 * 1024),
    }),
  }),
];

await Promise.all(instances.map((mf) => mf.ready));
console.log('workerd ready');

const stop = async () => {
  recorder.close();
  await Promise.allSettled(instances.map((mf) => mf.dispose()));
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
