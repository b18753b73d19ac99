"""The WSGI entry point for gunicorn: `gunicorn service.wsgi:app` (see `osmanthus serve`).

Each worker builds its own app from the environment (no preloading: a LightGBM model forked
from a parent that has used OpenMP can hang)."""

from __future__ import annotations

from service.app import create_app
from service.rights.overdue import start_sweeping

app = create_app()
# overdue disputes stop counting on time even for people nobody asks about (rights/overdue.py)
start_sweeping(app, app.extensions["osmanthus.config"].sweep_seconds)
