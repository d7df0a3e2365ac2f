// functions/cloudflare-worker/e2e/workerd.mjs: the built Worker straight under workerd (through
// Miniflare, without wrangler dev's proxy and Node process in front, which are slow for large
// bodies), in each origin mode, plus a plain JavaScript pass-through Worker for comparison.
// Started by scripts/e2e-worker; runs until SIGTERM / SIGINT.
//
// Instances, one workerd process, each on a port of its own:
//   url      ORIGIN_URL = the demo origin (large bodies, timeouts, the CPU measurement)
//   service  ORIGIN_SERVICE = ORIGIN, a service binding to a small JavaScript Worker that forwards
//            to the demo origin and marks its responses (x-origin-worker: service)
//   route    no ORIGIN_URL / ORIGIN_SERVICE: the request's own URL. Miniflare's `upstream`
//            rewrites each request's URL to the demo origin's, as Cloudflare gives a Worker on a
//            route its zone's URL
//   plain    a plain JavaScript Worker passing requests to the demo origin
//
// Environment: E2E_WORKERD_PORTS (four free ports, comma-separated, in the order above),
// ORIGIN_URL, UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN, SESSION_SECRETS, ADMIN_TOKEN,
// WORKER_SHIM (the built shim.mjs), COMPATIBILITY_DATE, and optional extra vars for the gateways
// as E2E_WORKERD_VARS (a JSON object). Prints `workerd ready` once every instance answers.
import { Miniflare } from 'miniflare';
import path from 'node:path';

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`workerd.mjs: ${name} is not set`);
  return value;
};

const ports = need('E2E_WORKERD_PORTS').split(',').map(Number);
if (ports.length !== 4 || ports.some((p) => !(p > 0))) {
  throw new Error('workerd.mjs: E2E_WORKERD_PORTS must be four ports');
}
const [urlPort, servicePort, routePort, plainPort] = ports;
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
];

await Promise.all(instances.map((mf) => mf.ready));
console.log('workerd ready');

const stop = async () => {
  await Promise.allSettled(instances.map((mf) => mf.dispose()));
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
