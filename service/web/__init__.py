"""The citizen page: `/app`, a single page that uses only the public `/v1/me` API.

A plain Flask blueprint (not in the OpenAPI document): the page's HTML, its styles and scripts,
all served by the app itself, so the page works with no external network. The scripts send
the citizen's token in the Authorization header of each `fetch()` to `/v1/me/...`; the server
side of this blueprint reads no token and no data.

Every answer carries a strict Content-Security-Policy: scripts, styles, images and API calls
from this origin only, no inline script, no framing, no referrer. With the city's OpenID
Connect provider configured, the page can also sign in through it (authorization code with
PKCE, in the browser: `static/signin.js`); `/app/sign-in.json` gives the page the provider's
public settings, and the policy lets the page call the provider's token endpoint, nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory

from service.rights.oidc import sign_in_settings

STATIC = Path(__file__).parent / "static"

blp = Blueprint("web", __name__, static_folder=str(STATIC), static_url_path="/app/static")

POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'",
])


ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?")  # nothing that could end a directive


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if ORIGIN.fullmatch(origin) else None


def _policy() -> str:
    """POLICY, with the provider's token endpoint (if any) added to `connect-src`."""
    settings = sign_in_settings(current_app.extensions["osmanthus.config"])
    if settings is None:
        return POLICY
    origin = _origin(settings["token_endpoint"])
    if origin is None:
        return POLICY
    return POLICY.replace("connect-src 'self'", f"connect-src 'self' {origin}")


@blp.route("/app", strict_slashes=False)
def page() -> Response:
    """The page itself (it signs in with a pasted citizen token)."""
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/app/sign-in.json")
def sign_in() -> Response:
    """The provider the page may sign in with: `{"provider": null}` when none is configured or
    it cannot be reached now (the page then offers the pasted token alone)."""
    response = jsonify({"provider": sign_in_settings(current_app.extensions["osmanthus.config"])})
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.after_request
def _headers(response: Response) -> Response:
    # Only the page's own policy governs its fetch()es; scripts and styles keep the fixed one
    # (and never wait on the provider's discovery).
    page_itself = request.endpoint == "web.page"
    response.headers["Content-Security-Policy"] = _policy() if page_itself else POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
