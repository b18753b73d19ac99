"""Fixtures shared by every layer's tests."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

os.environ.setdefault("OSMANTHUS_PERSON_KEY", "test-person-key")

# In CI, property tests draw the same examples every run, so a red build is reproducible; on a
# developer's machine they keep exploring.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def require_services() -> bool:
    """In CI a missing PostgreSQL or Redis is a failure, not a skip."""
    return os.environ.get("OSMANTHUS_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"{reason} (OSMANTHUS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The one test world: a small city, its records and a registered champion, built once per
    session for every test that asks (tests/service/world.py; the service and web tests)."""
    from tests.service.world import build_world

    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def demo_city(tmp_path_factory):
    """The demo's city and champion candidate, built once per session with the demo's own
    steps and arguments (`osmanthus demo`: its default size and seed, 1% spoiled rows,
    validate, features at the three snapshots, train out of time). About 30 s; tests that
    hold the demo's numbers (bands, perks, points per record) share it."""
    import datetime as dt
    from pathlib import Path
    from types import SimpleNamespace

    import polars as pl
    from click.testing import CliRunner

    from model.bundle import load_model
    from service.cli import demo as cli_demo
    from service.cli.main import main

    defaults = {p.name: p.default for p in cli_demo.demo.params}
    root = Path(tmp_path_factory.mktemp("demo-city"))
    city_dir, feature_dir = root / "city", root / "features"
    runner = CliRunner()

    def run(*args: str) -> None:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output[-2000:]

    run("city", "--people", str(defaults["people"]), "--seed", str(defaults["seed"]),
        "--out", str(city_dir), "--corrupt-rate", "0.01", "--quiet")
    run("validate", str(city_dir / "feeds"), "--out", str(root))
    for as_of in (cli_demo.TRAIN_AS_OF, cli_demo.VALID_AS_OF, cli_demo.CURRENT_AS_OF):
        run("features", "--records", str(root / "records"), "--as-of", as_of,
            "--people", str(city_dir / "people.parquet"),
            "--out", str(feature_dir / f"{as_of}.parquet"))
    model_dir = root / "model"
    train = cli_demo._train_arguments(feature_dir, city_dir, model_dir, defaults["seed"])
    from service.cli.train import train as train_command

    result = runner.invoke(train_command, [
        "--features", train["features_path"], "--valid-features", train["valid_features_path"],
        "--outcomes", train["outcomes_path"], "--train-as-of", cli_demo.TRAIN_AS_OF,
        "--valid-as-of", cli_demo.VALID_AS_OF, "--people", train["people_path"],
        "--out", train["out_dir"], "--seed", str(train["seed"])], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-2000:]
    return SimpleNamespace(
        root=root, city=city_dir, model_dir=model_dir,
        scorecard=load_model(model_dir).scorecard,
        current=pl.read_parquet(feature_dir / f"{cli_demo.CURRENT_AS_OF}.parquet"),
        valid=pl.read_parquet(feature_dir / f"{cli_demo.VALID_AS_OF}.parquet"),
        outcomes=pl.read_parquet(city_dir / "outcomes.parquet"),
        people=pl.read_parquet(city_dir / "people.parquet"),
        valid_as_of=dt.date.fromisoformat(cli_demo.VALID_AS_OF))
