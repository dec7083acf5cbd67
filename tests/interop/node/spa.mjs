// A single-page app in a real browser (headless Chromium, playwright-core) on an origin of its
// own: it runs the authorization code flow with PKCE as a public client and then calls the
// token, userinfo, revocation, JWKS and introspection endpoints with fetch() across origins, so
// Chromium itself enforces CORS. The page (served by tests/interop/test_browser_spa.py) records
// what it saw in window.__result; this script signs in on the gateway's pages in between and
// reports the page's results. A second, unregistered origin then tries the same calls.
import { chromium } from 'playwright-core';
import { run, timed } from './lib.mjs';
import { ARGS } from './chromium.mjs';

async function resultOf(page) {
  await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 15000 });
  return page.evaluate(() => window.__result);
}

run(async (input, out) => {
  const t = {};
  out.timings = t;
  const browser = await timed(t, 'launch', () =>
    chromium.launch({ executablePath: input.chromium, headless: true, args: ARGS }),
  );
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    const failures = [];
    page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
    // The app sends the browser to the gateway's authorization endpoint.
    await timed(t, 'to_login', async () => {
      await page.goto(`${input.spa_origin}/`);
      await page.waitForURL((u) => u.pathname.endsWith('/oauth2/authorize'));
    });
    await timed(t, 'sign_in_and_allow', async () => {
      await page.getByLabel('Username').fill(input.user);
      await page.getByLabel('Password').fill(input.password);
      await page.locator('form button[type=submit]').first().click();
      await page.getByRole('button', { name: /allow/i }).click();
    });
    // Back at the app's redirect URI, which redeems the code and calls the APIs.
    await timed(t, 'app_calls', async () => {
      await page.waitForURL((u) => u.origin === input.spa_origin && u.pathname === '/cb');
      out.spa = await resultOf(page);
    });
    out.failures = failures;

    // An origin that no client registered: the browser must not let it read the answers.
    await timed(t, 'other_origin', async () => {
      await page.goto(`${input.other_origin}/probe`);
      out.other_origin = await resultOf(page);
    });
    await timed(t, 'context_close', () => context.close());
  } finally {
    await timed(t, 'close', () => browser.close());
  }
  return {};
});
