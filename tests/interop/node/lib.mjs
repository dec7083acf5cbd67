// Shared by the interop scripts: the input on stdin (secrets never on the command line), the
// result on stdout as one JSON document, and a small form-submitting HTTP "browser" that drives
// the gateway's login and consent pages the way a browser would (cookies, hidden fields, ticked
// boxes, the pressed button). It reads the pages as a browser does, so it does not depend on
// the field names the gateway uses.

export async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

// Runs main(input) and prints {ok: true, ...result} or {ok: false, error, ...partial}; the exit
// code is 0 either way when the output is JSON, so the Python side reports the failing step.
export async function run(main) {
  const started = performance.now();
  const partial = {};
  try {
    const result = await main(await readInput(), partial);
    emit({ ok: true, ms: Math.round(performance.now() - started), ...partial, ...result });
  } catch (err) {
    emit({
      ok: false,
      ms: Math.round(performance.now() - started),
      ...partial,
      error: `${err?.name ?? 'Error'}: ${err?.message ?? err}`,
      code: err?.code,
      oauth_error: err?.error,
      cause: err?.cause ? String(err.cause?.message ?? err.cause) : undefined,
      stack: err?.stack,
    });
  }
}

function emit(doc) {
  process.stdout.write(JSON.stringify(doc) + '\n');
}

// Times one step and records it in timings (milliseconds).
export async function timed(timings, name, fn) {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings[name] = Math.round((performance.now() - t0) * 10) / 10;
  }
}

const decodeEntities = (s) =>
  s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

function attributes(tag) {
  const attrs = {};
  for (const m of tag.matchAll(/([a-zA-Z_:-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

// The first form of the page: its action and what a browser would submit with the given text
// inputs filled in and the submit button whose value is `button` pressed.
export function formSubmission(page, { fill = {}, button } = {}) {
  const form = page.match(/<form\b([^>]*)>([\s\S]*?)<\/form>/i);
  if (!form) throw new Error(`no form on the page: ${page.slice(0, 300)}`);
  const action = attributes(form[1]).action ?? '';
  const body = new URLSearchParams();
  for (const m of form[2].matchAll(/<(input|button)\b([^>]*)>/gi)) {
    const a = attributes(m[2]);
    if (!a.name) continue;
    const type = (a.type ?? (m[1].toLowerCase() === 'button' ? 'submit' : 'text')).toLowerCase();
    if (type === 'submit') {
      if (button !== undefined && a.value === button) body.append(a.name, a.value);
    } else if (type === 'checkbox' || type === 'radio') {
      if ('checked' in a) body.append(a.name, a.value ?? 'on');
    } else if (a.name in fill) {
      body.append(a.name, fill[a.name]);
    } else {
      body.append(a.name, a.value ?? '');
    }
  }
  return { action, body };
}

// An HTTP client with a cookie jar that follows nothing by itself.
export class FormBrowser {
  constructor() {
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers);
    if (this.cookies.size) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const resp = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const line of resp.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return resp;
  }

  // Signs in on the login page and answers the consent page (when one is shown) with
  // `decision`; returns the URL the gateway finally redirects the browser to.
  async authorize(authorizeUrl, { username, password, decision = 'allow' }) {
    let resp = await this.request(authorizeUrl);
    const steps = [];
    for (let i = 0; i < 5; i++) {
      if (resp.status >= 300 && resp.status < 400) {
        const location = new URL(resp.headers.get('location'), resp.url || authorizeUrl);
        if (location.origin === new URL(authorizeUrl).origin) {
          resp = await this.request(location);
          continue;
        }
        return { location: location.href, steps };
      }
      const page = await resp.text();
      if (resp.status !== 200) throw new Error(`page answered ${resp.status}: ${page.slice(0, 500)}`);
      const isLogin = /type="password"/i.test(page);
      steps.push(isLogin ? 'login' : 'consent');
      const { action, body } = isLogin
        ? formSubmission(page, { fill: { username, password } })
        : formSubmission(page, { button: decision });
      resp = await this.request(new URL(action, authorizeUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
    }
    throw new Error(`no redirect after ${steps.join(' → ')}`);
  }
}
