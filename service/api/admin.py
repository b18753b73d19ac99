"""Modellers and operators: /v1/admin/... (being built)."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("admin", __name__, url_prefix="/v1/admin")
