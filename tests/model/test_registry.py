"""The registry: versions, the champion, each promotion gate refusing with its reason, force,
rollback, tampering, and the `osmanthus models` / `evaluate` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from model.bundle import ModelRefused, frame_hash, load_model, save_model
from model.registry import PromotionRefused, Registry, monotone_violations
from model.scorecard import PointsScale
from service.cli.main import main
from tests.model.test_bundle import fitted, people_for


def snapshot_data():
    champion, _, _, _, valid, vy = fitted()
    scores = champion.score_frame(valid).score
    # approvals of 80% and 60%: group rates are steady enough for a four-fifths test
    thresholds = {"library": float(np.quantile(scores, 0.2)),
                  "bike": float(np.quantile(scores, 0.4))}
    return valid, vy, thresholds


def biased_people():
    """Women get the top scores, men the bottom: any threshold in between fails fairness."""
    champion, _, _, _, valid, _ = fitted()
    scores = champion.score_frame(valid).score
    gender = np.where(scores >= np.median(scores), "F", "M")
    return people_for(valid, 3, gender=gender)


def register(registry: Registry, kind: str = "champion", scale: PointsScale | None = None,
             **kwargs) -> str:
    scorecard, report, train, y, _, _ = fitted(kind)
    if scale is not None:
        scorecard = scorecard.with_scale(scale)
    return registry.register(scorecard, report=report, training_data_hash=frame_hash(train, y),
                             **kwargs)


def promote(registry: Registry, version: str, people=None, **kwargs):
    valid, vy, thresholds = snapshot_data()
    if people is None:
        people = people_for(valid, 3)
    return registry.promote(version, frame=valid, target=vy, people=people,
                            thresholds=thresholds, **kwargs)


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path / "registry")


@pytest.fixture
def with_champion(registry):
    version = register(registry, by="ana", why="first")
    promote(registry, version, by="ana", why="first champion")
    return registry, version


def test_versions_are_numbered_and_listed(registry):
    assert registry.list() == [] and registry.champion() is None
    assert register(registry, by="ana", why="a") == "v0001"
    assert register(registry) == "v0002"
    rows = registry.list()
    assert [r["version"] for r in rows] == ["v0001", "v0002"]
    assert rows[0]["by"] == "ana" and rows[0]["why"] == "a" and not rows[0]["champion"]
    assert load_model(registry.path("v0001")).metadata["catalog_hash"] is not None
    assert [e["event"] for e in registry.history()] == ["registered", "registered"]


def test_default_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OSMANTHUS_REGISTRY", str(tmp_path / "elsewhere"))
    assert Registry().root == tmp_path / "elsewhere"


def test_first_model_is_refused_when_unfair_then_promoted_when_fair(registry):
    version = register(registry)
    with pytest.raises(PromotionRefused) as refused:
        promote(registry, version, people=biased_people())
    assert any("adverse-impact ratio" in r and "gender" in r for r in refused.value.reasons)
    assert registry.champion() is None
    result = promote(registry, version, by="ana", why="first")
    assert result.promoted and not result.forced and result.reasons == []
    assert registry.champion() == version
    assert registry.history()[-1]["event"] == "promoted"
    assert registry.history()[-1]["by"] == "ana"


def test_promotion_without_people_cannot_check_fairness(registry):
    version = register(registry)
    valid, vy, thresholds = snapshot_data()
    with pytest.raises(PromotionRefused, match="fairness not checked"):
        registry.promote(version, frame=valid, target=vy, thresholds=thresholds)


def test_an_equal_challenger_passes_and_the_old_champion_is_remembered(with_champion):
    registry, first = with_champion
    second = register(registry)
    result = promote(registry, second)
    assert result.promoted and result.previous == first
    assert result.evaluation["stability"]["psi_vs_champion"] < 0.01
    assert registry.champion() == second


def test_a_weaker_challenger_is_refused_for_auc(with_champion):
    registry, first = with_champion
    weaker = register(registry, "weaker")
    with pytest.raises(PromotionRefused) as refused:
        promote(registry, weaker)
    assert any(r.startswith("AUC") and "worse than the champion" in r
               for r in refused.value.reasons)
    assert registry.champion() == first
    assert registry.history()[-1]["event"] == "refused"


def test_a_shifted_challenger_is_refused_for_psi_only(with_champion):
    registry, first = with_champion
    shifted = register(registry, scale=PointsScale(base_score=700))
    with pytest.raises(PromotionRefused) as refused:
        promote(registry, shifted)
    assert len(refused.value.reasons) == 1, refused.value.reasons
    assert "score PSI" in refused.value.reasons[0]
    assert registry.champion() == first


def test_a_challenger_breaking_a_direction_is_refused(with_champion):
    registry, _ = with_champion
    assert monotone_violations(registry.load("v0001")) == []
    broken = register(registry, "broken")
    with pytest.raises(PromotionRefused) as refused:
        promote(registry, broken)
    reasons = refused.value.reasons
    assert any("direction of po_honours_60m is +0 in the model but +1" in r for r in reasons)
    assert any(r.startswith("points of po_honours_60m move the score down") for r in reasons)


def test_every_failed_gate_is_listed(with_champion):
    registry, _ = with_champion
    broken = register(registry, "broken")
    with pytest.raises(PromotionRefused) as refused:
        promote(registry, broken, people=biased_people())
    reasons = " | ".join(refused.value.reasons)
    assert "direction of po_honours_60m" in reasons and "adverse-impact ratio" in reasons


def test_force_is_recorded_with_who_and_why(with_champion):
    registry, first = with_champion
    weaker = register(registry, "weaker")
    with pytest.raises(ValueError, match="reason"):
        promote(registry, weaker, force=True, by="bo")
    result = promote(registry, weaker, force=True, by="bo", why="regulator asked")
    assert result.forced and registry.champion() == weaker
    forced = registry.record(weaker)["forced"]
    assert len(forced) == 1 and forced[0]["by"] == "bo" and forced[0]["why"] == "regulator asked"
    assert any("AUC" in r for r in forced[0]["reasons"]) and forced[0]["previous"] == first
    event = registry.history()[-1]
    assert event["event"] == "forced" and event["by"] == "bo" and event["reasons"]


def test_rollback_returns_to_the_previous_champion(with_champion):
    registry, first = with_champion
    with pytest.raises(LookupError):
        registry.rollback()
    second = register(registry)
    promote(registry, second)
    assert registry.rollback(by="cy", why="complaints") == first
    assert registry.champion() == first
    event = registry.history()[-1]
    assert (event["event"], event["version"], event["previous"], event["by"]) == (
        "rolled back", first, second, "cy")
    assert len(registry.history()) == 5  # append-only: nothing was removed


def test_a_tampered_challenger_is_refused_and_the_champion_keeps_serving(with_champion):
    registry, first = with_champion
    second = register(registry)
    state = registry.index.read_bytes()
    model_txt = registry.path(second) / "model.txt"
    model_txt.write_text(model_txt.read_text().replace("learning_rate", "learning_rat3"))
    with pytest.raises(ModelRefused, match=r"model\.txt"):
        promote(registry, second)
    assert registry.index.read_bytes() == state
    assert registry.champion() == first
    assert registry.load_champion().directory == registry.path(first)


def test_rewriting_a_version_with_its_checksums_is_still_refused(with_champion):
    registry, first = with_champion
    scorecard, report, *_ = fitted()
    target = registry.path(first)
    for path in target.iterdir():
        path.unlink()
    save_model(scorecard, target, report=report, evaluation=None)  # valid, but not the same
    load_model(target)
    with pytest.raises(ModelRefused, match="digest recorded at registration"):
        registry.load_champion()


def test_a_refused_champion_can_fall_back_to_the_previous_one(with_champion):
    registry, first = with_champion
    second = register(registry)
    promote(registry, second)
    (registry.path(second) / "metadata.json").write_text("{}")
    with pytest.raises(ModelRefused, match="metadata.json"):
        registry.load_champion()
    assert registry.load_champion(fallback=True).directory == registry.path(first)


def test_registering_a_tampered_directory_is_refused(registry, tmp_path):
    scorecard, report, *_ = fitted()
    directory = save_model(scorecard, tmp_path / "m", report=report)
    (directory / "MODEL_CARD.md").write_text("nothing to see")
    with pytest.raises(ModelRefused, match="MODEL_CARD.md"):
        registry.register(directory)
    assert registry.list() == []


# --- the commands ---------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    valid, vy, thresholds = snapshot_data()
    day = "2025-06-30"
    valid.with_columns(snapshot=np.full(valid.height, day)).write_parquet(tmp_path / "f.parquet")
    out = valid.select("person_key").with_columns(snapshot=np.full(valid.height, day),
                                                  defaulted=vy)
    out.write_csv(tmp_path / "outcomes.csv")
    out.with_columns(true_pd=np.clip(vy * 0.6 + 0.2, 0, 1)).drop("defaulted").write_csv(
        tmp_path / "truth.csv")
    people_for(valid, 3).write_csv(tmp_path / "people.csv")
    (tmp_path / "perks.json").write_text(json.dumps({"perks": [
        {"id": k, "min_score": v} for k, v in thresholds.items()]}))
    snap = ["--features", str(tmp_path / "f.parquet"), "--outcomes",
            str(tmp_path / "outcomes.csv"), "--as-of", day, "--people",
            str(tmp_path / "people.csv"), "--perks", str(tmp_path / "perks.json")]
    return tmp_path, snap


def test_models_commands(files):
    tmp_path, snap = files
    reg = ["--registry", str(tmp_path / "reg")]
    runner = CliRunner()
    for kind in ("champion", "weaker"):
        scorecard, report, *_ = fitted(kind)
        save_model(scorecard, tmp_path / kind, report=report)
        result = runner.invoke(main, ["models", "register", str(tmp_path / kind), *reg])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["models", "promote", "v0001", *snap, *reg, "--by", "ana"])
    assert result.exit_code == 0, result.output
    assert "v0001 is the champion" in result.output
    result = runner.invoke(main, ["models", "promote", "v0002", *snap, *reg])
    assert result.exit_code == 1 and "AUC" in result.output and "still v0001" in result.output
    result = runner.invoke(main, ["models", "promote", "v0002", *snap, *reg, "--force"])
    assert result.exit_code != 0 and "--why" in result.output
    result = runner.invoke(main, ["models", "promote", "v0002", *snap, *reg, "--force",
                                  "--why", "test", "--by", "bo"])
    assert result.exit_code == 0 and "FORCED" in result.output
    listing = runner.invoke(main, ["models", "list", *reg]).output
    assert "* v0002" in listing and "forced" in listing and "  v0001" in listing
    result = runner.invoke(main, ["models", "rollback", *reg, "--why", "bad"])
    assert result.exit_code == 0 and "to v0001" in result.output
    assert Registry(tmp_path / "reg").champion() == "v0001"


def test_evaluate_command_writes_the_report(files):
    tmp_path, snap = files
    scorecard, report, train, *_ = fitted()
    save_model(scorecard, tmp_path / "m", report=report)
    train.write_parquet(tmp_path / "train.parquet")
    result = CliRunner().invoke(main, [
        "evaluate", "--model", str(tmp_path / "m"), *snap, "--truth", str(tmp_path / "truth.csv"),
        "--train-features", str(tmp_path / "train.parquet"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    valid, vy, thresholds = snapshot_data()
    assert written["rows"] == valid.height
    assert set(written["fairness"]) == set(thresholds)
    assert written["true_pd"]["auc"] == pytest.approx(1.0)
    assert f"AUC {written['metrics']['auc']:.4f}" in result.output
    assert (tmp_path / "out" / "evaluation.md").exists()
    (tmp_path / "m" / "model.txt").write_text("tampered")
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "m"), *snap,
                                       "--out", str(tmp_path / "out2")])
    assert result.exit_code != 0 and "model.txt" in result.output


def test_without_perks_evaluate_checks_fairness_at_the_services_perks(files,
                                                                    monkeypatch):
    """One default for every command that checks fairness: the perks partners are answered
    by (as the API's promotion gates use), not some other list of thresholds."""
    from service.rights.perks import load_perks

    monkeypatch.delenv("OSMANTHUS_PERKS", raising=False)
    tmp_path, snap = files
    at = snap.index("--perks")
    without_perks = snap[:at] + snap[at + 2:]
    scorecard, report, *_ = fitted()
    save_model(scorecard, tmp_path / "m", report=report)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "m"),
                                       *without_perks, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert written["thresholds"] == load_perks().thresholds()
    assert set(written["fairness"]) == set(load_perks().thresholds())


def test_models_export_writes_the_classic_scorecard(tmp_path):
    registry = Registry(tmp_path / "reg")
    version = register(registry)
    result = CliRunner().invoke(main, ["models", "export", version, "--out", str(tmp_path / "x"),
                                       "--registry", str(registry.root)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "scorecard.csv").exists()
    assert (tmp_path / "x" / "scorecard.md").exists()
    result = CliRunner().invoke(main, ["models", "export", "v0042", "--out", str(tmp_path / "y"),
                                       "--registry", str(registry.root)])
    assert result.exit_code != 0 and "v0042" in result.output
