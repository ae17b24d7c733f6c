"""Partitions fit the data: the cadence is inferred from the timestamp (and shown), chosen by config, one per file
for a glob without a timestamp, or none for one table."""

import numpy as np
import pandas as pd
import pytest

from nexus_assets.partitions import partitioning
from tests.conftest import SMALL_CONFIG


def _table(tmp_path, stamps, name="events.csv"):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"event_time": stamps, "x": rng.random(len(stamps)), "y": rng.integers(0, 2, len(stamps))})
    frame.to_csv(tmp_path / name, index=False)


def _config(write_config, **dataset):
    source = {"kind": "file", "path": dataset.pop("path", "events.csv")}
    base = {"target": "y", "id_column": None, "columns": None, "classes": None, "start_date": None, "end_date": None}
    return write_config({"dataset": base | dataset, "checks": {"ranges": None}}, source=source)


@pytest.mark.parametrize(
    ("stamps", "cadence", "keys"),
    [
        (pd.date_range("2026-01-01", periods=3 * 500, freq="48s"), "daily", 1),  # 1,800 rows a day
        (pd.date_range("2026-01-01", periods=6 * 60, freq="4h"), "weekly", 9),  # 6 a day, 42 a week
        (pd.date_range("2022-01-01", periods=4 * 365, freq="D"), "monthly", 48),  # one a day for four years
        (pd.DatetimeIndex(np.repeat(pd.date_range("2025-01-01", periods=12, freq="MS"), 40)), "monthly", 12),
    ],
)
def test_the_cadence_is_inferred_from_the_timestamps(tmp_path, write_config, stamps, cadence, keys):
    _table(tmp_path, stamps)
    partitions = partitioning(_config(write_config, timestamp="event_time"))
    assert partitions.cadence == cadence and partitions.note.startswith(f"{cadence} (inferred:")
    assert len(partitions.keys()) == keys
    assert partitions.start == stamps.min().date().replace(day=1 if cadence == "monthly" else stamps.min().day)


def test_weeks_start_on_the_first_rows_weekday_and_the_range_covers_the_data(tmp_path, write_config):
    stamps = pd.date_range("2026-01-07", periods=100, freq="6h")  # a Wednesday, 25 days
    _table(tmp_path, stamps)
    partitions = partitioning(_config(write_config, timestamp="event_time", partitions="weekly"))
    assert partitions.keys() == ["2026-01-07", "2026-01-14", "2026-01-21", "2026-01-28"]
    assert partitions.note.startswith("weekly (dataset.partitions)")


def test_a_glob_without_timestamp_is_a_partition_per_file_and_one_file_is_none(tmp_path, write_config):
    (tmp_path / "batches").mkdir()
    for number in (1, 2, 3):
        _table(tmp_path, pd.date_range("2026-01-01", periods=5), name=f"batches/b{number}.csv")
    files = partitioning(_config(write_config, timestamp=None, path="batches/*.csv"))
    assert files.cadence == "files" and files.keys() == ["b1.csv", "b2.csv", "b3.csv"]
    single = partitioning(_config(write_config, timestamp=None, path="batches/b1.csv"))
    assert single.cadence == "none" and "monitoring needs data that arrives over time" in single.note


def test_sql_sources_default_to_daily(write_config):
    source = {"kind": "sql", "url": "sqlite://", "query": "SELECT 1"}
    partitions = partitioning(write_config(source=source))
    assert partitions.cadence == "daily" and partitions.keys()[0] == SMALL_CONFIG["dataset"]["start_date"]
