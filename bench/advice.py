"""What a citizen's advice costs, beside one re-score of the same person.

    .venv/bin/osmanthus demo --dir var/demo --no-serve      # once: a scored demo city
    .venv/bin/python bench/advice.py --demo-dir var/demo [--people 30]

`GET /v1/me/advice` (in process, the Flask test client) for two groups of the demo city's
residents: the lowest scores (most perks out of reach: no date is looked for) and scores
560–640 (perks just out of reach: a date is looked for, one feature build per coming month
until each perk passes). The floor, measured in the same run for the same people: one
re-score as of one date (`whatif.scores_without`), the unit the advice's dates are built from.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, required=True)
    parser.add_argument("--people", type=int, default=30)
    args = parser.parse_args()
    root = args.demo_dir.resolve()
    if not (root / "osmanthus.db").exists():
        print(f"{root} holds no demo store: run `osmanthus demo --dir {root} --no-serve`",
              file=sys.stderr)
        return 2
    os.environ.update({"DATABASE_URL": f"sqlite:///{root}/osmanthus.db",
                       "OSMANTHUS_AS_OF": "2026-01-01", "OSMANTHUS_REGISTRY": f"{root}/registry",
                       "OSMANTHUS_SECRETS_FILE": f"{root}/secrets.json"})
    import sqlalchemy as sa

    from service.app import create_app
    from service.base.config import Config, export_development_secrets
    from service.rights.auth import issue_token
    from service.rights.pages import explained_records
    from service.scoring.whatif import scores_without

    export_development_secrets()
    app = create_app(Config.from_env())
    client, config = app.test_client(), app.extensions["osmanthus.config"]
    groups = {"lowest": "1 = 1", "560-640": "score BETWEEN 560 AND 640"}
    print(machine())
    for name, where in groups.items():
        with app.extensions["osmanthus.engine"].connect() as connection:
            keys = connection.execute(sa.text(
                f"SELECT person_key FROM scores WHERE as_of = '2026-01-01' AND {where} "
                "ORDER BY score LIMIT :n"), {"n": args.people}).scalars().all()
        advice, rescore, dated, locked = [], [], 0, 0
        for key in keys:
            headers = {"Authorization": f"Bearer {issue_token(config, 'citizen', key)}"}
            began = time.perf_counter()
            page = client.get("/v1/me/advice", headers=headers).get_json()
            advice.append(time.perf_counter() - began)
            locked += len(page["perks"])
            dated += sum(p["unlocks_by_itself_on"] is not None for p in page["perks"])
            with app.app_context():
                records, as_of, _ = explained_records(app, key)
                began = time.perf_counter()
                scores_without(app, records, [None], as_of)
                rescore.append(time.perf_counter() - began)
        a, r = statistics.median(advice) * 1000, statistics.median(rescore) * 1000
        print(f"{name:>8}: {len(keys)} people; advice median {a:.1f} ms (max "
              f"{max(advice) * 1000:.1f}); one re-score {r:.1f} ms; advice = {a / r:.1f} "
              f"re-scores; {dated} of {locked} locked perks dated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
