"""Citizens: /v1/me/... (being built)."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("me", __name__, url_prefix="/v1/me")
