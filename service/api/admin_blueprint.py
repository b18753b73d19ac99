"""The admin blueprint itself: /v1/admin, its admin-token check, its error documentation.

`admin.py` (feeds, disputes, reviews, re-scoring) and `admin_models.py` (models, perks) both
add their routes to this one blueprint; it lives apart from both so that neither imports the
other (they used to import each other in a circle).
"""

from __future__ import annotations

import datetime as dt
import re

from flask import g, request
from flask_smorest import Blueprint
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict

from service.api.schemas import ErrorEnvelopeSchema
from service.base.errors import ApiError
from service.rights.auth import admin_name


class _Parser(FlaskParser):
    """webargs, plus `multipart`: a form's fields and files together (one request body)."""

    __location_map__ = {**FlaskParser.__location_map__, "multipart": "load_multipart"}

    def load_multipart(self, req, schema):
        from webargs.multidictproxy import MultiDictProxy

        return MultiDictProxy(CombinedMultiDict([req.form, req.files]), schema)


blp = Blueprint("admin", __name__, url_prefix="/v1/admin",
                description="Modellers and operators: feeds, disputes, reviews, models, perks")
blp.ARGUMENTS_PARSER = _Parser()
blp.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
    **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING, "multipart": "multipart/form-data"}


_PATH_VALUE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@blp.before_request
def _authenticate() -> None:
    """An admin token first, so that nobody else learns anything from a 404 or a 422; then
    ids in the path that no id could ever look like are simply not found."""
    g.admin_actor = f"admin:{admin_name()}"
    if any(not _PATH_VALUE.match(str(value)) for value in (request.view_args or {}).values()):
        raise ApiError(404, "not found")


def errors(*statuses: int):
    """Document the error envelope for these statuses (401 and 403 are on every operation)."""
    def decorate(view):
        for status in (401, 403, *statuses):
            view = blp.alt_response(status, schema=ErrorEnvelopeSchema)(view)
        if 503 not in statuses:  # an admin signed in by the city's provider, which may be down
            view = blp.alt_response(503, schema=ErrorEnvelopeSchema, description=(
                "The city's OpenID Connect provider cannot be reached to check its token (only "
                "with a provider configured)"))(view)
        return view
    return decorate


def utc(row) -> dict:
    """A row as a dict, its datetimes in UTC (SQLite hands back naive UTC ones)."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    for name, value in data.items():
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            data[name] = value.replace(tzinfo=dt.UTC)
    return data
