"""The floors for the API benchmark: bare Flask apps that do the least a request can do.

Served by `bench/api.py` under exactly the gunicorn settings of the real app (same workers,
worker class and threads), so the ratio of an endpoint's requests/s to a floor's measures
what Osmanthus itself costs, not what Flask, gunicorn, PostgreSQL or this machine cost.
`gunicorn bench.floor_app:app`.

- `GET /`: one constant JSON (the floor of every endpoint).
- `POST /decide` (issue 15): the floor of a partner's single decision — read one row by an
  indexed key and insert one row, each a statement on an autocommit psycopg connection (one
  per worker, as the app holds one pooled connection per worker), on the same PostgreSQL
  (`FLOOR_DATABASE_URL`, a libpq URI; its tables made by `create_tables`). No JSON schema, no
  token, no limiter: a decision's minimum of work on the same machine and database.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request

app = Flask(__name__)
_connection = None  # per process (gunicorn sync workers: one request at a time each)

TABLES = """
CREATE TABLE floor_people (key text PRIMARY KEY, score integer NOT NULL);
CREATE TABLE floor_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        at timestamptz NOT NULL DEFAULT now(), key text NOT NULL,
                        detail jsonb NOT NULL);
"""


def create_tables(libpq_url: str, keys: list[str]) -> None:
    """The floor's two tables, `keys` stored with a score each (run once, by the bench)."""
    import psycopg

    with psycopg.connect(libpq_url, autocommit=True) as connection:
        connection.execute(TABLES)
        with connection.cursor().copy("COPY floor_people (key, score) FROM STDIN") as copy:
            for i, key in enumerate(keys):
                copy.write_row((key, 300 + i % 550))
        connection.execute("ANALYZE floor_people")


def _db():
    global _connection
    if _connection is None or _connection.closed:
        import psycopg

        _connection = psycopg.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True)
    return _connection


@app.get("/")
def constant():
    """The same small JSON every time."""
    return jsonify({"ok": True, "service": "floor"})


@app.post("/decide")
def decide():
    """One indexed read, one insert, the answer."""
    key = request.get_json()["key"]
    connection = _db()
    row = connection.execute("SELECT score FROM floor_people WHERE key = %s", (key,)).fetchone()
    eligible = bool(row and row[0] >= 600)
    connection.execute("INSERT INTO floor_log (key, detail) VALUES (%s, %s)",
                       (key, f'{{"eligible": {"true" if eligible else "false"}}}'))
    return jsonify({"key": key, "eligible": eligible})
