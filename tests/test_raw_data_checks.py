"""Bad rows fail a check that names the column, rows and values; the data stays stored, nothing downstream runs,
and other partitions are not blocked."""

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from nexus_assets.data.synthetic import generate_day
from nexus_cli.runs import materialize
from nexus_defs.definitions import build_definitions
from tests.conftest import merge

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
DAY = DAYS[1]


def _text_in_numeric(frame):
    frame = frame.astype({"age": object})
    frame.loc[17, "age"] = "forty"
    return frame


def _drop_target(frame):
    return frame.drop(columns="churned")


def _null_target(frame):
    frame = frame.astype({"churned": float})
    frame.loc[[4, 8], "churned"] = np.nan
    return frame


def _all_null(frame):
    return frame.assign(satisfaction_score=np.nan)


def _duplicate_ids(frame):
    frame = frame.copy()
    frame.loc[[3, 4], "customer_id"] = frame.loc[2, "customer_id"]
    return frame


def _other_day_only(frame):
    return frame.assign(event_time=frame["event_time"] + dt.timedelta(days=1))


def _out_of_range(frame):
    frame = frame.copy()
    frame.loc[9, "age"] = 7
    return frame


def _write_days(tmp_path, write_config, corrupt=None) -> pd.DataFrame:
    """Three days of synthetic rows as one CSV; `corrupt` changes the middle day only."""
    source = write_config(name="synthetic.yaml").dataset.source
    frames = [generate_day(source, dt.date.fromisoformat(day)) for day in DAYS]
    if corrupt:
        frames[1] = corrupt(frames[1])
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(tmp_path / "events.csv", index=False)
    return frame


def _file_config(write_config, changes=None):
    # `columns` left out, as a user would: roles are inferred once and fixed by the data contract
    base = {"dataset": {"columns": None, "partitions": "daily", "end_date": "2026-01-04"}}
    return write_config(merge(base, changes or {}), source={"kind": "file", "path": "events.csv"})


def _failed(result) -> dict[str, str]:
    return {e.check_name: e.description for e in result.get_asset_check_evaluations() if not e.passed}


@pytest.mark.parametrize(
    ("corrupt", "check", "message"),
    [
        (_text_in_numeric, "schema", "column 'age' should hold number values (numeric) but 1 row(s) do not, "),
        (_text_in_numeric, "schema", "row 17 (events.csv line 319): 'forty'"),
        (_other_day_only, "non_empty", "the partition has no rows; if empty periods are normal"),
        (_all_null, "null_rates", "column 'satisfaction_score' is entirely null"),
        (_duplicate_ids, "unique_ids", "1 id(s) in 'customer_id' appear more than once (3 rows)"),
        (
            _out_of_range,
            "value_ranges",
            "column 'age' has 1 row(s) outside [18.0, 120.0], e.g. row 9 (events.csv line 311) with [7.0]",
        ),
    ],
)
def test_bad_partition_fails_its_check_and_blocks_only_itself(
    tmp_path, write_config, instance, embedded_home, corrupt, check, message
):
    _write_days(tmp_path, write_config, corrupt)
    defs = build_definitions(_file_config(write_config))
    assert materialize(defs, instance, ["raw_data", "features"], DAYS[0]).success  # fixes the data contract

    result = materialize(defs, instance, ["raw_data", "features"], DAY)

    assert not result.success
    failed = _failed(result)
    assert message in failed[check]
    if corrupt in (_text_in_numeric, _out_of_range):  # the file line named holds the bad value
        lines = (tmp_path / "events.csv").read_text().splitlines()
        age = lines[0].split(",").index("age")
        line = 319 if corrupt is _text_in_numeric else 311
        assert lines[line - 1].split(",")[age] in ("forty", "7", "7.0")
    assert DAY not in instance.get_materialized_partitions(dg.AssetKey("features"))
    kept = Path(embedded_home) / "storage" / "raw_data" / DAY
    assert kept.exists(), "the failing partition's rows must stay stored for inspection"
    # the bad value is on one day: the next day is not blocked by it
    assert materialize(defs, instance, ["raw_data", "features"], DAYS[2]).success


def test_rows_awaiting_a_label_pass_unless_the_labelled_share_is_below_the_minimum(
    tmp_path, write_config, instance, embedded_home
):
    _write_days(tmp_path, write_config, _null_target)
    defs = build_definitions(_file_config(write_config))
    assert materialize(defs, instance, ["raw_data", "features"], DAYS[0]).success
    result = materialize(defs, instance, ["raw_data", "features"], DAY)
    assert result.success, "two rows without a label are kept and scored, not blocked"
    [present] = [e for e in result.get_asset_check_evaluations() if e.check_name == "target_present"]
    assert present.passed and present.metadata["awaiting_label"].value == 2
    assert "target_valid" not in _failed(result), "a null target must not read as an invalid class (1.0 vs 1)"

    _write_days(tmp_path, write_config, _drop_target)
    defs = build_definitions(_file_config(write_config, {"checks": {"min_labelled_share": 0.5}}))
    result = materialize(defs, instance, ["raw_data", "features"], DAY)
    assert not result.success
    assert (
        "only 0.0% of rows have a target 'churned' value, fewer than checks.min_labelled_share=0.5: 300 of 300"
        in (_failed(result)["target_present"])
    )
    assert (Path(embedded_home) / "storage" / "raw_data" / DAY).exists(), "the blocked rows stay stored"


def test_the_first_good_load_fixes_the_data_contract(tmp_path, write_config, instance):
    _write_days(tmp_path, write_config)
    config = _file_config(write_config)
    defs = build_definitions(config)
    for day in DAYS:
        assert materialize(defs, instance, ["raw_data", "features"], day).success
    contract = defs.resources["app_db"].contract("churn")
    assert contract["version"] == 1 and contract["fixed_by"] == DAYS[0]
    age, plan, churned = (contract["columns"][name] for name in ("age", "plan", "churned"))
    assert (age["role"], age["type"], age["why"]) == ("numeric", "number", "numbers")
    assert age["usual"] == {"rows": 300, "null_share": 0.0, "min": 18.0, "max": 84.0}, "what later loads are held to"
    assert (plan["role"], plan["type"], plan["usual"]["distinct"]) == ("categorical", "string", 3)
    assert (churned["role"], churned["type"]) == ("target", "integer") and "usual" not in churned
    schema = instance.get_latest_materialization_event(dg.AssetKey("raw_data")).asset_materialization.metadata[
        "dagster/column_schema"
    ]
    described = {c.name: (c.type, c.description) for c in schema.value.columns}
    assert described["age"][0] == "number" and described["age"][1].startswith("numeric")
    # declaring other roles in the config makes a new version of the contract
    defs = build_definitions(
        _file_config(write_config, {"dataset": {"columns": {"numeric": None, "categorical": None, "drop": ["device"]}}})
    )
    assert materialize(defs, instance, ["raw_data", "features"], DAYS[0]).success
    assert defs.resources["app_db"].contract("churn")["version"] == 2


def test_empty_periods_warn_instead_of_blocking_when_allowed(tmp_path, write_config, instance):
    _write_days(tmp_path, write_config, _other_day_only)
    config = _file_config(write_config, {"checks": {"allow_empty_partitions": True}})
    result = materialize(build_definitions(config), instance, ["raw_data", "features"], DAY)
    assert result.success
    (empty,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "non_empty"]
    assert not empty.passed and empty.severity == dg.AssetCheckSeverity.WARN


def test_rows_outside_the_partitions_are_counted_not_dropped(tmp_path, write_config, instance):
    frame = _write_days(tmp_path, write_config)
    frame = frame.astype({"event_time": object})
    frame.loc[5, "event_time"] = "yesterday-ish"
    frame.loc[6, "event_time"] = "2025-12-30 10:00:00"
    frame.to_csv(tmp_path / "events.csv", index=False)
    result = materialize(build_definitions(_file_config(write_config)), instance, ["raw_data", "features"], DAY)
    assert result.success, "rows in no partition cannot block this one"
    (outside,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "in_range"]
    assert not outside.passed and outside.severity == dg.AssetCheckSeverity.WARN
    assert "2 row(s) of the source are in no partition: 1 with no readable timestamp, 1 before" in outside.description
    assert "events.csv line 7: 'yesterday-ish' (not a timestamp)" in outside.description


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"customer_id,event_time,churned\n1,2026-01-02 10:00:00,caf\xe9\n", "byte 56 (line 2) is not utf-8 text"),
    ],
)
def test_unreadable_source_fails_readable_naming_the_file(tmp_path, write_config, instance, content, message):
    _write_days(tmp_path, write_config)
    defs = build_definitions(_file_config(write_config))
    (tmp_path / "events.csv").write_bytes(content)
    result = materialize(defs, instance, ["raw_data", "features"], DAY)
    assert not result.success
    failed = _failed(result)
    assert str(tmp_path / "events.csv") in failed["readable"] and message in failed["readable"]


def test_good_partition_passes_every_check(write_config, instance):
    result = materialize(build_definitions(write_config()), instance, ["raw_data", "features"], DAY)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert len(result.get_asset_check_evaluations()) == 9


def test_a_bad_value_in_one_table_is_named_with_its_file_line(tmp_path, write_config, instance):
    import palmerpenguins

    penguins = palmerpenguins.load_penguins().astype({"bill_length_mm": object})
    penguins.loc[100, "bill_length_mm"] = "n/a?"
    penguins.to_csv(tmp_path / "penguins.csv", index=False)
    dataset = {
        "name": "penguins",
        "target": "species",
        "task": "multiclass_classification",
        "id_column": None,
        "timestamp": None,
        "start_date": None,
        "end_date": None,
        "classes": None,
        "columns": None,
    }
    config = write_config(
        {"dataset": dataset, "checks": {"ranges": None}}, source={"kind": "file", "path": "penguins.csv"}
    )
    result = materialize(build_definitions(config), instance, ["raw_data"])
    assert not result.success
    assert "row 100 (penguins.csv line 102): 'n/a?'" in _failed(result)["schema"]
