"""The HTML of the gateway's pages: one stylesheet served by the gateway itself, the page frame
and the headers every page sends (RFC 9700 §4.16, §4.2: a strict CSP, no framing, no referrer,
no caching). Server-rendered, no external asset, no inline style or script.
"""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse, RedirectResponse, Response

__all__ = [
    "CSS_PATH",
    "PAGE_HEADERS",
    "SCOPE_DESCRIPTIONS",
    "STYLESHEET",
    "consent_body",
    "error_page",
    "hidden",
    "login_body",
    "page",
    "redirect",
]

SCOPE_DESCRIPTIONS = {
    "openid": "Confirm who you are (your user id)",
    "read": "Read your data",
    "write": "Change your data",
}

# The stylesheet is served from here ('self' under the CSP; no inline style, no external asset).
CSS_PATH = "/oauth2/assets/login.css"
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}

STYLESHEET = """
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;background:#f3f4f6;color:#111827}main{max-width:420px;margin:8vh auto;padding:0 16px}
.card{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:28px}
h1{font-size:1.35rem;margin:0 0 4px}p.sub{color:#4b5563;margin:0 0 20px}
label{display:block;font-weight:600;margin:14px 0 4px}
input[type=text],input[type=password]{width:100%;padding:10px 12px;border:1px solid #d1d5db;
border-radius:8px;font-size:1rem}input:focus{outline:2px solid #2563eb;border-color:#2563eb}
button{width:100%;margin-top:20px;padding:11px;border:0;border-radius:8px;background:#2563eb;
color:#fff;font-size:1rem;font-weight:600;cursor:pointer}button.secondary{background:#e5e7eb;
color:#111827;margin-top:10px}.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;
border-radius:8px;padding:10px 12px;margin:0 0 12px}ul.scopes{list-style:none;padding:0;margin:0}
ul.scopes li{display:flex;gap:10px;align-items:flex-start;padding:10px 0;
border-top:1px solid #e5e7eb}ul.scopes label{margin:0;font-weight:400}
ul.scopes code{color:#6b7280;font-size:.85rem}footer{text-align:center;color:#9ca3af;
font-size:.8rem;margin-top:16px}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{html.escape(title)}</title><link rel="stylesheet" href="{CSS_PATH}"></head>'
        f'<body><main><div class="card">{body}</div><footer>Tokenry</footer></main></body></html>'
    )
    return HTMLResponse(doc, status, PAGE_HEADERS)


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{html.escape(value)}">'


def redirect(uri: str) -> Response:
    resp = RedirectResponse(uri, status_code=303)
    resp.headers.update(PAGE_HEADERS)
    return resp


def error_page(message: str) -> HTMLResponse:
    body = (
        "<h1>Something went wrong</h1>"
        f'<p class="error" role="alert">{html.escape(message)}</p>'
        '<p class="sub">Go back to the application and start again.</p>'
    )
    return page("Error", body, 400)


def login_body(fields: str, client_name: str, error: str, username: str) -> str:
    """The sign-in form (ids and names ``username``/``password`` are what browser tests use)."""
    err = f'<p class="error" role="alert" id="err">{html.escape(error)}</p>' if error else ""
    described = ' aria-describedby="err"' if error else ""
    return (
        "<h1>Sign in</h1>"
        f'<p class="sub">to continue to <strong>{html.escape(client_name)}</strong></p>'
        f'{err}<form method="post" action="/oauth2/login">{fields}'
        '<label for="username">Username</label>'
        f'<input type="text" id="username" name="username" autocomplete="username" '
        f'value="{html.escape(username)}" required autofocus{described}>'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" '
        f'autocomplete="current-password" required{described}>'
        '<button type="submit">Sign in</button></form>'
    )


def consent_body(fields: str, client_name: str, subject: str, scopes: tuple[str, ...]) -> str:
    """The consent form: one ticked box per requested scope, with its description."""
    items = "".join(
        f'<li><input type="checkbox" id="s{i}" name="grant_scope" value="{html.escape(s)}" '
        f'checked><label for="s{i}">{html.escape(SCOPE_DESCRIPTIONS.get(s, s))} '
        f"<code>{html.escape(s)}</code></label></li>"
        for i, s in enumerate(scopes)
    )
    return (
        f"<h1>Allow {html.escape(client_name)}?</h1>"
        f'<p class="sub">Signed in as <strong>{html.escape(subject)}</strong>. '
        f"{html.escape(client_name)} asks to:</p>"
        f'<form method="post" action="/oauth2/consent">{fields}'
        f'<ul class="scopes">{items}</ul>'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button>'
        "</form>"
    )
