"""The citizen page: `/app`, a single page that uses only the public `/v1/me` API.

A plain Flask blueprint (not in the OpenAPI document): the page's HTML, its styles and scripts,
all served by the app itself, so the page works with no external network. The scripts send
the citizen's token in the Authorization header of each `fetch()` to `/v1/me/...`; the server
side of this blueprint reads no token and no data.

Every answer carries a strict Content-Security-Policy: scripts, styles, images and API calls
from this origin only, no inline script, no framing, no referrer.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"

blp = Blueprint("web", __name__, static_folder=str(STATIC), static_url_path="/app/static")

POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'",
])


@blp.route("/app", strict_slashes=False)
def page() -> Response:
    """The page itself (it signs in with a pasted citizen token)."""
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
