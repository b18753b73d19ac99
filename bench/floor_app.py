"""The floor for the API benchmark: a bare Flask app returning one constant JSON.

Served by `bench/api.py` under exactly the gunicorn settings of the real app (same workers,
worker class and threads), so the ratio of an endpoint's requests/s to this one's measures
what Osmanthus itself costs, not what Flask, gunicorn or this machine cost.
`gunicorn bench.floor_app:app`."""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def constant():
    """The same small JSON every time."""
    return jsonify({"ok": True, "service": "floor"})
