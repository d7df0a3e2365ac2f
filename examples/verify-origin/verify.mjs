// Verifies the gateway's x-session-signature in a Node origin (no dependencies).
// Copy verifyGateway into your app; call it before trusting any x-session-* header.
import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * @param {string} secret   SESSION_ORIGIN_SECRET, the same as the gateway's
 * @param {string} method   the request method, e.g. req.method
 * @param {string} path     the path and query as received, e.g. req.url
 * @param {Record<string, string | string[] | undefined>} headers  lower-case names, e.g. req.headers
 * @param {number} windowSecs  the replay window (default 60 s)
 * @returns {boolean} true when the request came through the gateway unchanged
 */
export function verifyGateway(secret, method, path, headers, windowSecs = 60) {
  const value = headers['x-session-signature'];
  const m = typeof value === 'string' && /^t=(\d+),v1=([0-9a-f]{64})$/.exec(value);
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(Date.now() / 1000 - t) > windowSecs) return false;
  let text = `edge-session-v1\n${method}\n${path}\n${t}\n`;
  const names = Object.keys(headers)
    .filter((n) => n.replaceAll('_', '-').startsWith('x-session-') && n !== 'x-session-signature')
    .sort();
  for (const n of names) {
    const v = headers[n];
    text += `${n}:${Array.isArray(v) ? v.join(', ') : v}\n`;
  }
  const expected = createHmac('sha256', secret).update(text).digest();
  return timingSafeEqual(expected, Buffer.from(m[2], 'hex'));
}

// `node verify.mjs` reads {secret, method, path, headers} as JSON on stdin
// and exits 0 when the signature verifies (the project's tests use this).
if (import.meta.url === `file://${process.argv[1]}`) {
  let input = '';
  process.stdin.on('data', (d) => (input += d));
  process.stdin.on('end', () => {
    const { secret, method, path, headers } = JSON.parse(input);
    process.exit(verifyGateway(secret, method, path, headers) ? 0 : 1);
  });
}
