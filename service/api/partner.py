"""Partners: /v1/partner/... (being built)."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("partner", __name__, url_prefix="/v1/partner")
