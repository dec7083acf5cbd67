// A real browser (headless Chromium from Debian, driven by playwright-core) through the
// gateway's login and consent pages. Driven by tests/interop/test_browser_login.py: for each
// flow of the input it opens the authorization URL, signs in (optionally first with a wrong
// password), allows on the consent page and reports the URL the gateway redirected to, with
// a screenshot of every page. The Python side checks the redirect and redeems the code.
import { chromium } from 'playwright-core';
import { run, timed } from './lib.mjs';
import { ARGS } from './chromium.mjs';

async function shot(page, dir, name, shots) {
  const t0 = performance.now();
  await page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
  shots.push([name, Math.round(performance.now() - t0)]);
}

// What a product page should never do: load something from elsewhere, break its CSP, or
// scroll sideways at its width.
async function pageReport(page) {
  return page.evaluate(() => ({
    title: document.title,
    horizontalOverflow: document.documentElement.scrollWidth > window.innerWidth,
    labelledInputs: [...document.querySelectorAll('input:not([type=hidden])')].every(
      (i) => i.labels && i.labels.length > 0,
    ),
    stylesheetApplied: getComputedStyle(document.body).margin === '0px',
    focused: document.activeElement?.id || null,
    invalid: [...document.querySelectorAll('[aria-invalid=true]')].map((e) => e.id),
  }));
}

async function flow(browser, spec, input) {
  const { width, height, suffix, authorize_url: url, wrong_password: wrongPassword } = spec;
  const context = await browser.newContext({
    viewport: { width, height },
    isMobile: width < 600,
    hasTouch: width < 600,
    deviceScaleFactor: 1,
  });
  const page = await context.newPage();
  const t = {};
  const shots = [];
  const problems = [];
  const origin = new URL(url).origin;
  let callback = null;
  // Failed loads are reported by URL below (the console names no URL); the expected 401 of a
  // wrong password is not a problem of the page (the favicon probe must succeed too).
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push(`console: ${m.text()}`);
    }
  });
  page.on('response', (r) => {
    const path = new URL(r.url()).pathname;
    if (r.status() >= 400 && !(r.status() === 401 && path === '/oauth2/login')) {
      problems.push(`${r.status()} for ${r.request().method()} ${path}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (r.url().startsWith(input.redirect)) {
      callback = r.url();
    } else if (!r.url().startsWith(origin)) {
      problems.push(`request outside the gateway: ${r.url()}`);
    }
  });
  page.on('requestfailed', (r) => {
    if (!r.url().startsWith(input.redirect)) problems.push(`failed: ${r.url()}`);
  });
  const pages = {};
  try {
    const loginResp = await timed(t, 'login_page', () => page.goto(url));
    pages.login = { status: loginResp.status(), ...(await pageReport(page)) };
    await shot(page, input.screenshots, `login${suffix}`, shots);

    if (wrongPassword) {
      await page.getByLabel('Username').fill(input.user);
      await page.getByLabel('Password').fill('not the password');
      const [resp] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.locator('form button[type=submit]').first().click(),
      ]);
      await page.waitForLoadState();
      const alert = page.getByRole('alert');
      pages.login_error = {
        status: resp.status(),
        alert: (await alert.count()) ? await alert.first().innerText() : null,
        ...(await pageReport(page)),
      };
      await shot(page, input.screenshots, `login-error${suffix}`, shots);
    }

    await page.getByLabel('Username').fill(input.user);
    await page.getByLabel('Password').fill(input.password);
    const [consentResp] = await timed(t, 'sign_in', () =>
      Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.locator('form button[type=submit]').first().click(),
      ]),
    );
    await page.waitForLoadState();
    pages.consent = {
      status: consentResp.status(),
      scopes: await page.locator('input[type=checkbox]').evaluateAll((boxes) =>
        boxes.map((b) => ({ value: b.value, checked: b.checked, label: b.labels?.[0]?.innerText })),
      ),
      ...(await pageReport(page)),
    };
    await shot(page, input.screenshots, `consent${suffix}`, shots);
    pages.cookies = (await context.cookies()).map((c) => ({
      name: c.name,
      httpOnly: c.httpOnly,
      secure: c.secure,
      sameSite: c.sameSite,
      path: c.path,
    }));

    if (wrongPassword) {
      // "Not you?" (its own form, through the button's form attribute): the sign-in page for
      // the same request; sign in again and come back to consent.
      const [switched] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.getByRole('button', { name: /not you/i }).click(),
      ]);
      await page.waitForLoadState();
      pages.switch = { status: switched.status(), password: await page.getByLabel('Password').count() };
      await page.getByLabel('Username').fill(input.user);
      await page.getByLabel('Password').fill(input.password);
      await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.locator('form button[type=submit]').first().click(),
      ]);
      await page.waitForLoadState();
    }

    const [redirect] = await timed(t, 'allow', () =>
      Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.getByRole('button', { name: /allow/i }).click(),
      ]),
    );
    const deadline = Date.now() + 10000;
    while (callback === null && Date.now() < deadline) await page.waitForTimeout(10);
    pages.redirect = { status: redirect.status(), location: redirect.headers().location ?? null };
  } finally {
    await context.close();
  }
  return { callback, pages, shots, problems, timings: t };
}

async function errorPage(browser, url, input) {
  const t = {};
  const context = await timed(t, 'context', () =>
    browser.newContext({ viewport: { width: 1280, height: 800 } }),
  );
  const page = await context.newPage();
  try {
    const resp = await timed(t, 'goto', () => page.goto(url));
    const report = { status: resp.status(), ...(await pageReport(page)), timings: t };
    await timed(t, 'shot', () => shot(page, input.screenshots, 'error', []));
    return report;
  } finally {
    await context.close();
  }
}

run(async (input, out) => {
  const t = {};
  out.timings = t;
  const browser = await timed(t, 'launch', () =>
    chromium.launch({
      executablePath: input.chromium,
      headless: true,
      // the gateway's test certificate, pinned by its key (no CA added to the browser)
      args: input.spki ? [...ARGS, `--ignore-certificate-errors-spki-list=${input.spki}`] : ARGS,
    }),
  );
  try {
    out.version = browser.version();
    out.flows = [];
    for (const spec of input.flows) {
      out.flows.push(await timed(t, `flow${spec.suffix}`, () => flow(browser, spec, input)));
    }
    if (input.error_url) {
      out.error_page = await timed(t, 'error_page', () => errorPage(browser, input.error_url, input));
    }
  } finally {
    await timed(t, 'close', () => browser.close());
  }
  return {};
});
