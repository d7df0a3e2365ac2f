// The demo behind the Worker in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core, which never downloads a browser): sign in, counter, cart, a second and a third
// browser context as the same user, revoke one device, sign out everywhere from one, the other is
// signed out after a reload. Run by scripts/e2e-worker.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { COOKIE, env, uniqueUser } from './lib.mjs';

// Flags from shared/docs/toolchain.md. Playwright gives every launch a fresh temporary
// --user-data-dir of its own (and refuses one in `args`), removed when the browser closes.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let browser;
const problems = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: env.chromium,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
});

after(async () => {
  await browser?.close();
});

/** A new browser context (its own cookie jar: another device) with one page. */
async function device(name) {
  const context = await browser.newContext({ baseURL: env.browserUrl, userAgent: `e2e-browser (${name})` });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`);
  });
  return { context, page };
}

async function signIn(page, user) {
  await page.goto('/');
  await page.getByTestId('sign-in-username').fill(user);
  await page.getByTestId('sign-in-button').click();
  await page.getByTestId('user-name').waitFor();
  assert.equal(await page.getByTestId('user-name').textContent(), user);
}

async function assertSignedOut(page) {
  await page.getByTestId('sign-in-button').waitFor();
  assert.equal(await page.getByTestId('user-name').count(), 0);
}

async function devicesReady(page, rows) {
  await page.goto('/devices');
  await page.locator('[data-testid="devices-list"][data-state="ready"]').waitFor();
  await assert.doesNotReject(
    page.waitForFunction((n) => document.querySelectorAll('[data-testid="device-row"]').length === n, rows),
  );
}

test('browser: sign in, cart, two devices of one user, revoke, sign out everywhere', async (t) => {
  const user = uniqueUser('Ana');
  const a = await device('laptop');
  const b = await device('phone');
  const c = await device('tablet');

  // Laptop: an anonymous visitor, no session, no cookie.
  await a.page.goto('/');
  assert.equal(await a.page.getByTestId('session-status').getAttribute('data-state'), 'none');
  assert.deepEqual(await a.context.cookies(), []);

  await signIn(a.page, user);
  // The session cookie (next to it, the short-lived sync cookie of the REST store).
  const cookie = (await a.context.cookies()).find((c) => c.name === COOKIE);
  assert.ok(cookie, 'the session cookie is set');
  assert.equal(cookie.secure, true, 'Secure (accepted on http://localhost, a potentially trustworthy origin)');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Lax');
  assert.equal(cookie.path, '/');
  assert.equal(await a.page.evaluate(() => document.cookie), '', 'HttpOnly: invisible to scripts');

  // Counter and cart.
  await a.page.getByTestId('counter-increment').click();
  await a.page.locator('[data-testid="counter-value"]:text-is("1")').waitFor();
  for (const item of ['green tea', 'Crème brûlée']) {
    await a.page.getByTestId('cart-item-input').fill(item);
    await a.page.getByTestId('cart-add').click();
    await a.page.getByTestId('cart-item').filter({ hasText: item }).waitFor();
  }
  assert.equal(await a.page.getByTestId('cart-items').getAttribute('data-count'), '2');
  assert.deepEqual(await a.page.getByTestId('cart-item').allTextContents(), ['green tea', 'Crème brûlée']);
  assert.equal(await a.page.getByTestId('session-status').getAttribute('data-state'), 'signed-in');
  const shot = join(env.artifacts, 'home-signed-in.png');
  await a.page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  // The cart survives a reload (it lives in the session, in Redis).
  await a.page.reload();
  assert.equal(await a.page.getByTestId('cart-items').getAttribute('data-count'), '2');
  assert.equal(await a.page.getByTestId('counter-value').textContent(), '1');

  // Phone and tablet: the same user signs in; each device has its own session and cart.
  await signIn(b.page, user);
  assert.equal(await b.page.getByTestId('cart-empty').count(), 1);
  await signIn(c.page, user);
  await devicesReady(b.page, 3);
  assert.equal(await b.page.locator('[data-testid="device-row"][data-current="true"]').count(), 1);

  // From the laptop, revoke the tablet.
  await devicesReady(a.page, 3);
  const tabletId = (await c.page.getByTestId('session-id').textContent()) ?? '';
  const tabletRow = a.page.locator(`[data-testid="device-row"][data-session-id="${tabletId}"]`);
  assert.match(await tabletRow.textContent(), /tablet/);
  await tabletRow.getByTestId('device-revoke').click();
  await a.page.waitForFunction(
    () => document.querySelector('[data-testid="devices-list"]')?.getAttribute('data-state') === 'ready'
      && document.querySelectorAll('[data-testid="device-row"]').length === 2,
  );
  await c.page.reload();
  await assertSignedOut(c.page);

  // Laptop: sign out everywhere (a same-origin fetch POST /_session/logout-all), back home.
  await a.page.getByTestId('sign-out-everywhere').click();
  await a.page.waitForURL(`${env.browserUrl}/`);
  await assertSignedOut(a.page);
  const sessionCookies = async (ctx) => (await ctx.cookies()).filter((c) => c.name === COOKIE);
  assert.deepEqual(await sessionCookies(a.context), [], 'the laptop cookie is cleared');

  // Phone: still has its cookie, but after a reload it is signed out too.
  assert.equal((await sessionCookies(b.context)).length, 1);
  await b.page.goto('/');
  await assertSignedOut(b.page);
  await b.page.goto('/devices');
  await b.page.getByTestId('devices-signed-out').waitFor();

  for (const d of [a, b, c]) await d.context.close();
  assert.deepEqual(problems, [], 'no page errors or console errors');
});
