"""The WSGI entry point for gunicorn: `gunicorn service.wsgi:app` (see `osmanthus serve`).

Each worker builds its own app from the environment (no preloading: a LightGBM model forked
from a parent that has used OpenMP can hang)."""

from __future__ import annotations

from service.app import create_app

app = create_app()
