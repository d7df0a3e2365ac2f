// bench/workerd.mjs: the built Worker (functions/cloudflare-worker/build) under workerd through
// Miniflare, without wrangler dev's proxy in front (which is slow for large bodies), and beside it
// a plain JavaScript pass-through Worker to the same origin, for scale. Used by bench/streaming.sh.
//
// Environment: WORKER_PORT, PLAIN_PORT, ORIGIN_URL, UPSTASH_REDIS_REST_URL,
// UPSTASH_REDIS_REST_TOKEN, SESSION_SECRETS. Runs until killed.
import { Miniflare } from 'miniflare';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const build = path.join(root, 'functions/cloudflare-worker/build');
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`bench/workerd.mjs: ${name} is not set`);
  return value;
};

const gateway = new Miniflare({
  host: '127.0.0.1',
  port: Number(env('WORKER_PORT')),
  modules: true,
  scriptPath: path.join(build, 'worker/shim.mjs'),
  modulesRoot: build,
  modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
  compatibilityDate: '2026-04-20',
  bindings: {
    ORIGIN_URL: env('ORIGIN_URL'),
    UPSTASH_REDIS_REST_URL: env('UPSTASH_REDIS_REST_URL'),
    UPSTASH_REDIS_REST_TOKEN: env('UPSTASH_REDIS_REST_TOKEN'),
    SESSION_SECRETS: env('SESSION_SECRETS'),
  },
});

const plain = new Miniflare({
  host: '127.0.0.1',
  port: Number(env('PLAIN_PORT')),
  modules: true,
  compatibilityDate: '2026-04-20',
  bindings: { ORIGIN_URL: env('ORIGIN_URL') },
  script: `export default {
    async fetch(request, env) {
      const url = new URL(request.url);
      return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
    },
  };`,
});

await Promise.all([gateway.ready, plain.ready]);
console.log(`gateway on ${env('WORKER_PORT')}, plain on ${env('PLAIN_PORT')}`);
const stop = async () => {
  await Promise.allSettled([gateway.dispose(), plain.dispose()]);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
