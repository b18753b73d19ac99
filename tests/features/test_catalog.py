"""The feature catalog: complete, bilingual, and provably blind to protected attributes."""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features import catalog
from features.build import build_features
from features.catalog import (
    BY_NAME,
    DERIVED,
    FEATURE_NAMES,
    FEATURES,
    PROTECTED,
    catalog_hash,
    directions,
    features_of,
)
from features.records import Records, Source, record_schema
from tests.features import strategies as S

HELPERS = {"m_ago", "bit"}  # columns the builder adds (features.build.counting_frame)
IDS = [f.name for f in FEATURES]


def test_size_and_unique_names() -> None:
    assert 30 <= len(FEATURES) <= 50
    assert len(set(FEATURE_NAMES)) == len(FEATURES)
    assert [f.name for f in FEATURES] == FEATURE_NAMES and set(BY_NAME) == set(FEATURE_NAMES)


def test_every_source_has_features() -> None:
    assert {str(f.source) for f in FEATURES} == {s.value for s in Source} | {DERIVED}
    assert sum(len(features_of(s)) for s in [*Source, DERIVED]) == len(FEATURES)


@pytest.mark.parametrize("feature", FEATURES, ids=IDS)
def test_declaration_is_complete(feature: catalog.Feature) -> None:
    assert feature.direction in (-1, 0, 1)
    assert directions()[feature.name] == feature.direction
    for text in (feature.unit, feature.description_zh, feature.description_en):
        assert isinstance(text, str) and text.strip()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in feature.description_zh)
    assert feature.description_en.isascii()


@pytest.mark.parametrize("feature", FEATURES, ids=IDS)
@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("points", [-12.0, 7.5])
def test_every_text_formats_with_a_value(feature: catalog.Feature, lang: str,
                                         points: float) -> None:
    text = feature.text(1234.0, points, lang)
    assert text.strip() and "{" not in text and "}" not in text
    template = {("zh", True): feature.raises_zh, ("zh", False): feature.lowers_zh,
                ("en", True): feature.raises_en, ("en", False): feature.lowers_en}
    assert text == template[(lang, points >= 0)].format(value=1234.0)


def test_no_record_texts() -> None:
    assert catalog.NO_RECORD_ZH.strip() and catalog.NO_RECORD_EN.strip()


@pytest.mark.parametrize("feature", FEATURES, ids=IDS)
def test_computed_only_from_record_columns(feature: catalog.Feature) -> None:
    """The proof that no feature reads gender, age, birth date, ethnicity or district: every
    column an expression reads is a column of its source's typed record (or a builder helper,
    or an earlier feature for derived ones), and none is protected."""
    roots = set(feature.expr.meta.root_names())
    if feature.source == DERIVED:
        earlier = FEATURE_NAMES[: FEATURE_NAMES.index(feature.name)]
        allowed = {f for f in earlier if BY_NAME[f].source != DERIVED}
    else:
        allowed = set(record_schema(feature.source)) | HELPERS
    assert roots <= allowed
    assert not roots & set(PROTECTED)
    assert not roots & {"person_key", "record_id"}


def test_no_record_schema_holds_a_protected_column() -> None:
    for source in Source:
        assert not set(record_schema(source)) & set(PROTECTED)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_features_ignore_protected_columns_even_when_present(data: st.DataObject) -> None:
    """Records that carry protected columns build the same features as records without."""
    as_of = data.draw(S.as_of_dates())
    plain = data.draw(S.cities(as_of, max_people=3))
    frames = {}
    for source in Source:
        frame = plain.get(source)
        frames[source.value] = frame.with_columns(
            pl.lit("F").alias("gender"), pl.lit(33).alias("age"),
            pl.lit(dt.date(1992, 1, 1)).alias("birth_date"), pl.lit("Han").alias("ethnicity"),
            pl.lit("Xihu").alias("district"))
    assert_frame_equal(build_features(Records(**frames), as_of), build_features(plain, as_of))


def test_catalog_hash_changes_with_a_direction(monkeypatch: pytest.MonkeyPatch) -> None:
    before = catalog_hash()
    assert catalog_hash() == before  # stable
    first = FEATURES[0]
    flipped = dataclasses.replace(first, direction=-first.direction or 1)
    monkeypatch.setattr(catalog, "FEATURES", (flipped, *FEATURES[1:]))
    assert catalog_hash() != before


def test_catalog_hash_changes_with_an_interaction(monkeypatch: pytest.MonkeyPatch) -> None:
    before = catalog_hash()
    monkeypatch.setattr(catalog, "INTERACTIONS", ((FEATURE_NAMES[0], FEATURE_NAMES[1]),))
    assert catalog_hash() != before


def test_interactions_name_features() -> None:
    for pair in catalog.INTERACTIONS:
        assert len(pair) == 2 and set(pair) <= set(FEATURE_NAMES)


def test_unscored_features_are_catalog_features_and_the_rest_are_scored():
    from features.catalog import SCORED_FEATURES, UNSCORED

    assert set(FEATURE_NAMES) >= UNSCORED
    assert [n for n in FEATURE_NAMES if n not in UNSCORED] == SCORED_FEATURES
    assert 20 <= len(SCORED_FEATURES) < len(FEATURE_NAMES)
    # Thin-file features are shown, not scored: none of them may stand in for behaviour.
    assert {"months_of_history", "sources_reporting"} <= UNSCORED


def test_catalog_hash_changes_when_a_feature_stops_being_scored(monkeypatch):
    import dataclasses

    from features import catalog

    before = catalog.catalog_hash()
    changed = tuple(dataclasses.replace(f, scored=not f.scored) if i == 0 else f
                    for i, f in enumerate(catalog.FEATURES))
    monkeypatch.setattr(catalog, "FEATURES", changed)
    assert catalog.catalog_hash() != before
