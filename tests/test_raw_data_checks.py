"""Bad rows fail a blocking check that names the problem; the data stays stored and nothing downstream runs."""

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from nexus_assets.data.synthetic import generate_day
from nexus_assets.definitions import build_definitions
from nexus_assets.lib.runs import materialize

DAY = "2026-01-02"


def _drop_target(frame):
    return frame.drop(columns="churned")


def _text_in_numeric(frame):
    frame = frame.astype({"age": object})
    frame.loc[17, "age"] = "forty"
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


@pytest.mark.parametrize(
    ("corrupt", "check", "message"),
    [
        (
            _text_in_numeric,
            "schema",
            "column 'age' should be numeric but holds object values: 1 row(s) are not numbers, e.g. ['forty']",
        ),
        (_drop_target, "schema", "column 'churned' is missing"),
        (_drop_target, "target_valid", "target column 'churned' is missing"),
        (_other_day_only, "non_empty", "the partition has no rows"),
        (_all_null, "null_rates", "column 'satisfaction_score' is entirely null"),
        (_duplicate_ids, "unique_ids", "1 id(s) in 'customer_id' appear more than once (3 rows)"),
        (_out_of_range, "value_ranges", "column 'age' has 1 row(s) outside [18.0, 120.0], e.g. rows [9] with [7.0]"),
    ],
)
def test_bad_partition_fails_its_check_and_blocks_downstream(
    tmp_path, write_config, instance, embedded_home, corrupt, check, message
):
    config = write_config(source={"kind": "file", "path": "events.csv"})
    frame = generate_day(write_config(name="synthetic.yaml").dataset.source, dt.date.fromisoformat(DAY))
    corrupt(frame).to_csv(tmp_path / "events.csv", index=False)

    result = materialize(build_definitions(config), instance, ["raw_data", "features"], DAY)

    assert not result.success
    failed = {e.check_name: e.description for e in result.get_asset_check_evaluations() if not e.passed}
    assert message in failed[check]
    assert instance.get_latest_materialization_event(dg.AssetKey("features")) is None
    kept = Path(embedded_home) / "storage" / "raw_data" / DAY
    assert kept.exists(), "the failing partition's rows must stay stored for inspection"


def test_good_partition_passes_every_check(write_config, instance):
    result = materialize(build_definitions(write_config()), instance, ["raw_data", "features"], DAY)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert len(result.get_asset_check_evaluations()) == 6
