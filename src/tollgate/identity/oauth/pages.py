"""The sign-in and consent pages of ``/authorize``: plain server-rendered HTML, no script,
nothing loaded from elsewhere. Every value shown is escaped."""

from __future__ import annotations

from html import escape
from string import Template
from urllib.parse import urlsplit

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f5f6f8;color:#1d2330;
margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border:1px solid #dde1e8;border-radius:10px;padding:2rem;width:24rem;
box-shadow:0 2px 8px rgba(0,0,0,.05)}
h1{font-size:1.25rem;margin:0 0 1rem}p,li{line-height:1.45}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;
border:1px solid #c5cad3;border-radius:6px}
.actions{display:flex;gap:.5rem;margin-top:1.25rem}
button{flex:1;padding:.55rem;border-radius:6px;border:1px solid #2b59c3;font-weight:600;
cursor:pointer}
.primary{background:#2b59c3;color:#fff}.secondary{background:#fff;color:#2b59c3}
.error{background:#fdecec;border:1px solid #f3b8b8;padding:.5rem .75rem;border-radius:6px}
.muted{color:#5b6475;font-size:.9rem}code{word-break:break-all}
"""

PAGE = Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>$title · Tollgate</title><style>$style</style></head>
<body><main><h1>$title</h1>$body</main></body></html>"""
)

LOGIN = Template(
    """<p><strong>$client</strong> wants to use your Tollgate MCP account.</p>
<p>Sign in to continue.</p>$error
<form method="post" action="/oauth/login">
<input type="hidden" name="request" value="$request">
<input type="hidden" name="csrf" value="$csrf">
<label for="username">Username or email</label>
<input type="text" id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="actions"><button class="primary" type="submit">Sign in</button></div>
</form>"""
)

CONSENT = Template(
    """<p><strong>$client</strong> asks to act as your MCP account
<strong>$account</strong>.</p>
<ul>
<li>It may list and call the tools of <strong>$resource_name</strong>
(<code>$resource</code>), charged to your credits.</li>
<li>After you allow it, you are sent back to <code>$redirect_host</code>.</li>
</ul>
<p class="muted">Client id: <code>$client_id</code>. You can disconnect it at any time
(<code>DELETE /api/v1/oauth/grants/&lt;id&gt;</code>).</p>
<form method="post" action="/oauth/consent">
<input type="hidden" name="request" value="$request">
<input type="hidden" name="csrf" value="$csrf">
<div class="actions">
<button class="secondary" type="submit" name="decision" value="deny">Deny</button>
<button class="primary" type="submit" name="decision" value="allow">Allow</button>
</div></form>"""
)


def page(title: str, body: str) -> str:
    """A whole page around ``body`` (already escaped HTML)."""
    return PAGE.substitute(title=escape(title), style=STYLE, body=body)


def login_page(client: str, request_id: str, csrf: str, error: str | None = None) -> str:
    """The sign-in form of one pending authorization."""
    shown = f'<p class="error">{escape(error)}</p>' if error else ""
    body = LOGIN.substitute(
        client=escape(client), request=escape(request_id), csrf=escape(csrf), error=shown
    )
    return page("Sign in", body)


def resource_name(resource: str) -> str:
    """How the consent page names a resource: the gateway, or one virtual server."""
    path = urlsplit(resource).path
    if path.startswith("/servers/"):
        return f"the virtual server {path.split('/')[2]}"
    return "every server of this Tollgate"


def consent_page(
    *,
    client: str,
    client_id: str,
    account: str,
    resource: str,
    redirect_uri: str,
    request_id: str,
    csrf: str,
) -> str:
    """The consent form: which client, which account, which servers."""
    body = CONSENT.substitute(
        client=escape(client),
        client_id=escape(client_id),
        account=escape(account),
        resource=escape(resource),
        resource_name=escape(resource_name(resource)),
        redirect_host=escape(urlsplit(redirect_uri).netloc or redirect_uri),
        request=escape(request_id),
        csrf=escape(csrf),
    )
    return page("Connect a client", body)


def message_page(title: str, message: str) -> str:
    """A page that only says something (an expired request, a missing account)."""
    return page(title, f"<p>{escape(message)}</p>")
