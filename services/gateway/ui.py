"""The HTML of the gateway's pages: one stylesheet served by the gateway itself, the page frame
and the headers every page sends (RFC 9700 §4.16, §4.2: a strict CSP, no framing, no referrer,
no caching). Server-rendered, no external asset, no inline style or script.
"""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse, RedirectResponse, Response

__all__ = [
    "CSS_PATH",
    "FAVICON_PATH",
    "ICON",
    "ICON_PATH",
    "PAGE_HEADERS",
    "SCOPE_DESCRIPTIONS",
    "STYLESHEET",
    "consent_body",
    "error_page",
    "hidden",
    "human_error",
    "login_body",
    "page",
    "redirect",
]

SCOPE_DESCRIPTIONS = {
    "openid": "Confirm who you are (your user id)",
    "read": "Read your data",
    "write": "Change your data",
}

# The stylesheet and the icon are served from here ('self' under the CSP; no inline style, no
# external asset). Browsers ask /favicon.ico on their own: it gets the same SVG icon.
CSS_PATH = "/oauth2/assets/login.css"
ICON_PATH = "/oauth2/assets/icon.svg"
FAVICON_PATH = "/favicon.ico"
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}

#: The mark: a key in a rounded square (SVG, no script, no external reference).
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#2563eb"/>'
    '<circle cx="12" cy="16" r="5" fill="none" stroke="#fff" stroke-width="3"/>'
    '<path d="M17 16h9M22 16v4M25 16v3" stroke="#fff" stroke-width="3" stroke-linecap="round"/>'
    "</svg>"
)

STYLESHEET = """
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;background:#f3f4f6;color:#111827}main{max-width:420px;margin:6vh auto;padding:0 16px}
.brand{display:flex;align-items:center;justify-content:center;gap:8px;margin:0 0 16px;
font-weight:700;font-size:1.05rem;letter-spacing:.01em;color:#1f2937}.brand img{display:block}
.card{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:28px}
.card>:last-child{margin-bottom:0}
h1{font-size:1.35rem;margin:0 0 4px}.sub{color:#4b5563;margin:0 0 20px}
label{display:block;font-weight:600;margin:14px 0 4px}
input[type=text],input[type=password]{width:100%;padding:10px 12px;border:1px solid #d1d5db;
border-radius:8px;font-size:1rem}input:focus{outline:2px solid #2563eb;border-color:#2563eb}
input[aria-invalid=true]{border-color:#dc2626}
button{width:100%;margin-top:20px;padding:11px;border:0;border-radius:8px;background:#2563eb;
color:#fff;font-size:1rem;font-weight:600;cursor:pointer}button.secondary{background:#e5e7eb;
color:#111827;margin-top:10px}button.link{display:inline;width:auto;margin:0;padding:0;
background:none;color:#2563eb;font-weight:400;text-decoration:underline}
.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;
border-radius:8px;padding:10px 12px;margin:0 0 12px}ul.scopes{list-style:none;padding:0;margin:0}
ul.scopes li{display:flex;gap:10px;align-items:flex-start;padding:10px 0;
border-top:1px solid #e5e7eb}ul.scopes input{margin-top:5px}
ul.scopes label{margin:0;font-weight:400}
ul.scopes code{display:block;color:#6b7280;font-size:.85rem}
p.note{color:#4b5563;font-size:.9rem;margin:16px 0 0}
p.code{color:#6b7280;font-size:.8rem;margin:16px 0 0}p.code code{font-size:.8rem}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="icon" href="{ICON_PATH}" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{CSS_PATH}"></head>'
        f'<body><main><div class="brand"><img src="{ICON_PATH}" alt="" width="24" '
        'height="24"><span>Tokenry</span></div>'
        f'<div class="card">{body}</div></main></body></html>'
    )
    return HTMLResponse(doc, status, PAGE_HEADERS)


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{html.escape(value)}">'


def redirect(uri: str) -> Response:
    resp = RedirectResponse(uri, status_code=303)
    resp.headers.update(PAGE_HEADERS)
    return resp


def human_error(error: str, description: str) -> tuple[str, str]:
    """A heading and a sentence a person can act on, for an error that cannot be redirected to
    the client (RFC 6749 §4.1.2.1): the RFC code and the technical description stay on the page,
    small, for whoever debugs the client."""
    text = description.lower()
    if error == "invalid_client" or "unknown client" in text:
        return (
            "This application isn't registered",
            "The application that sent you here is not known to this sign-in service, so it "
            "cannot ask you to sign in. Contact the application's support.",
        )
    if "redirect_uri" in text or "redirect uri" in text:
        return (
            "This application's return address isn't registered",
            "The application asked to send you back to an address it did not register, so you "
            "are not sent there. Contact the application's support.",
        )
    if "challenge" in text or "form" in text or "expired" in text:
        return (
            "This sign-in page has expired",
            "Go back to the application and sign in again.",
        )
    if description[:1].isupper() and description.endswith("."):
        return "Something went wrong", description  # already written for people (logout.py)
    return (
        "Something went wrong",
        "The sign-in request could not be completed. Go back to the application and start again.",
    )


def error_page(description: str, error: str = "invalid_request") -> HTMLResponse:
    heading, text = human_error(error, description)
    body = (
        f"<h1>{html.escape(heading)}</h1>"
        f'<p class="error" role="alert">{html.escape(text)}</p>'
        f'<p class="code">Error code <code>{html.escape(error)}</code>: '
        f"{html.escape(description)}</p>"
    )
    return page(heading, body, 400)


def login_body(fields: str, client_name: str, error: str, username: str) -> str:
    """The sign-in form (ids and names ``username``/``password`` are what browser tests use).
    After a failed attempt the password field takes the focus and is marked invalid."""
    err = f'<p class="error" role="alert" id="err">{html.escape(error)}</p>' if error else ""
    described = ' aria-describedby="err"' if error else ""
    user_focus = "" if error else " autofocus"
    password_state = ' autofocus aria-invalid="true"' if error else ""
    return (
        "<h1>Sign in</h1>"
        f'<p class="sub">to continue to <strong>{html.escape(client_name)}</strong></p>'
        f'{err}<form method="post" action="/oauth2/login">{fields}'
        '<label for="username">Username</label>'
        f'<input type="text" id="username" name="username" autocomplete="username" '
        f'value="{html.escape(username)}" required{user_focus}{described}>'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" '
        f'autocomplete="current-password" required{password_state}{described}>'
        '<button type="submit">Sign in</button></form>'
    )


def consent_body(
    fields: str, client_name: str, subject: str, scopes: tuple[str, ...], return_to: str
) -> str:
    """The consent form: one ticked box per requested scope, with its description and the scope
    on its own line; who is signed in (with "Not you?": sign in as someone else for the same
    request) and the host the browser goes back to."""
    items = "".join(
        f'<li><input type="checkbox" id="s{i}" name="grant_scope" value="{html.escape(s)}" '
        f'checked><label for="s{i}">{html.escape(SCOPE_DESCRIPTIONS.get(s, s))}'
        f"<code>{html.escape(s)}</code></label></li>"
        for i, s in enumerate(scopes)
    )
    name = html.escape(client_name)
    back = (
        f'<p class="note">You will be sent back to <strong>{html.escape(return_to)}</strong>.</p>'
        if return_to
        else ""
    )
    # "Not you?" submits its own form (form="switch", after the consent form), so the consent
    # form stays the page's first form and Enter in it still means Allow.
    return (
        f"<h1>Allow {name}?</h1>"
        f'<form id="consent" method="post" action="/oauth2/consent">{fields}'
        f'<p class="sub">Signed in as <strong>{html.escape(subject)}</strong>. '
        '<button type="submit" form="switch" name="decision" value="switch" class="link">'
        f"Not you?</button></p><p>{name} asks to:</p>"
        f'<ul class="scopes">{items}</ul>{back}'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button>'
        f'</form><form id="switch" method="post" action="/oauth2/consent">{fields}</form>'
    )
