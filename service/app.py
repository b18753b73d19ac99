"""The app factory: `create_app(config)` wires storage, the API and its error envelope."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask
from flask_smorest import Api

from service.api import guard
from service.api.limits import init_limiter
from service.api.schemas import DocsPlugin, ErrorEnvelopeSchema
from service.base.cache import make_cache
from service.base.config import Config
from service.base.errors import register_error_handlers
from service.rights.perks import load_perks
from service.scoring.serving import load_serving
from service.store.tables import make_engine, migrate

log = logging.getLogger(__name__)


class OsmanthusFlask(Flask):
    """Flask, remembering whether each hook and view is a coroutine function: Flask asks
    `inspect` again for every hook of every request (~17 times a partner decision)."""

    def ensure_sync(self, func: Callable) -> Callable:
        known = self.__dict__.setdefault("_osmanthus_sync", {})
        found = known.get(func)
        if found is None:
            if len(known) >= 1024:  # `after_this_request` passes a new closure each request
                known.clear()
            found = known[func] = super().ensure_sync(func)
        return found


class OsmanthusApi(Api):
    """flask-smorest, documenting our error envelope (not its own `ErrorSchema`) as the default
    and 422 answers, since `service/base/errors.py` answers every error with it."""

    ERROR_SCHEMA = ErrorEnvelopeSchema


def create_app(config: Config | None = None) -> Flask:
    """A configured app. Start-up fails loudly on a bad production configuration."""
    config = (config or Config.from_env()).check()
    app = OsmanthusFlask("osmanthus")
    # `//v1/...` and a missing trailing slash are answered by the route or a 404 envelope,
    # never werkzeug's own HTML 308 (routing redirects skip the error handlers).
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_body_bytes,  # service/api/guard.py sets it per endpoint
        API_TITLE="Osmanthus (桂花分)",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.extensions["osmanthus.config"] = config
    engine = make_engine(config.database_url)
    migrate(engine)
    app.extensions["osmanthus.engine"] = engine
    app.extensions["osmanthus.cache"] = make_cache(config.redis_url)
    app.extensions["osmanthus.perks"] = load_perks(config.perks_file)
    app.extensions["osmanthus.model"] = load_serving(config.registry_dir, config.num_threads)

    guard.install(app)  # 413 before anything reads the body
    api = OsmanthusApi(app, spec_kwargs={"extra_plugins": [DocsPlugin()]})
    from service import web
    from service.api import (
        admin,
        admin_models,
        admin_repairs,  # noqa: F401 - its routes ride on admin's blueprint
        health,
        me,
        partner,
        transparency,
    )

    app.before_request(partner.authenticate_before_body)  # the key before the body
    guard.install_value_checks(app)  # then 422 for JSON no schema should see

    # admin_models, admin_repairs: on admin's blueprint
    for module in (health, me, partner, admin, transparency):
        api.register_blueprint(module.blp)
    admin_models.sync_perks(app)  # the perks table is the policy of record (seeded from the file)
    register_error_handlers(app)
    app.register_blueprint(web.blp)  # the citizen page, /app (not in the OpenAPI document)
    init_limiter(app, config)  # rate limits per API key (service/api/limits.py)
    app.wsgi_app = guard.SafeHeaders(app.wsgi_app, app.url_map)  # outermost: cached pages too
    if config.audit_seal_seconds > 0:  # this worker also seals the audit log (issue 15)
        from service.base.clock import clock_of
        from service.base.keys import audit_keys_of
        from service.rights.sequencer import start

        app.extensions["osmanthus.audit_sealer"] = start(
            engine, audit_keys_of(config), config.audit_seal_seconds, clock_of(config))
    return app

