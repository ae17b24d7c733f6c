"""The same rows arrive from the synthetic generator, a CSV file, Parquet files and a SQL query."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from nexus_assets.data.sources import coverage, read_partition
from nexus_assets.data.synthetic import generate_day
from nexus_cli.runs import materialize
from nexus_defs.definitions import build_definitions

DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)]
SQL_QUERY = "SELECT * FROM events WHERE event_time >= :start AND event_time < :end ORDER BY customer_id"


@pytest.fixture
def synthetic(write_config):
    config = write_config()
    return pd.concat([generate_day(config.dataset.source, day) for day in DAYS], ignore_index=True)


def _same_rows(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal values; a missing category may read back as None or NaN depending on the source."""
    normalize = lambda f: f.where(f.notna(), np.nan).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(normalize(frame), normalize(expected), check_dtype=False)


def _expected(synthetic: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    return synthetic[synthetic["event_time"].dt.date == day]


def _day(day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    return pd.Timestamp(day), pd.Timestamp(day) + pd.Timedelta(days=1)


def test_csv_file_gives_the_synthetic_rows(tmp_path, write_config, synthetic, instance):
    synthetic.to_csv(tmp_path / "events.csv", index=False)
    config = write_config(source={"kind": "file", "path": "events.csv"})
    for day in DAYS:
        _same_rows(read_partition(config, _day(day)), _expected(synthetic, day))
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features"], "2026-01-02").success
    _same_rows(
        defs.load_asset_value("raw_data", partition_key="2026-01-02", instance=instance), _expected(synthetic, DAYS[1])
    )


def test_parquet_glob_gives_the_synthetic_rows(tmp_path, write_config, synthetic):
    (tmp_path / "lake").mkdir()
    for day in DAYS:
        _expected(synthetic, day).to_parquet(tmp_path / "lake" / f"{day}.parquet")
    config = write_config(source={"kind": "file", "path": "lake/*.parquet"})
    _same_rows(read_partition(config, _day(DAYS[2])), _expected(synthetic, DAYS[2]))


def test_unparseable_timestamps_leave_the_partition_and_are_counted(tmp_path, write_config, synthetic):
    broken = synthetic.astype({"event_time": object})
    broken.loc[5, "event_time"] = "yesterday-ish"
    broken.to_csv(tmp_path / "events.csv", index=False)
    config = write_config(source={"kind": "file", "path": "events.csv"})
    _same_rows(read_partition(config, _day(DAYS[0])), _expected(synthetic, DAYS[0]).drop(index=5))
    found = coverage(config, DAYS[0], DAYS[-1] + dt.timedelta(days=1))
    assert (found.unparseable, found.before, found.after) == (1, 0, 0)
    assert found.examples == [f"{tmp_path / 'events.csv'} line 7: 'yesterday-ish' (not a timestamp)"]


def test_csv_is_read_in_chunks_keeping_only_the_partition(tmp_path, write_config, synthetic, monkeypatch):
    from nexus_assets.data import sources

    monkeypatch.setattr(sources, "_CSV_CHUNK_ROWS", 250)  # several chunks per day
    synthetic.to_csv(tmp_path / "events.csv", index=False)
    config = write_config(source={"kind": "file", "path": "events.csv"})
    _same_rows(read_partition(config, _day(DAYS[1])), _expected(synthetic, DAYS[1]))


def test_sqlite_query_gives_the_synthetic_rows(tmp_path, write_config, synthetic, instance):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    synthetic.to_sql("events", sa.create_engine(url), index=False)
    config = write_config(source={"kind": "sql", "url": url, "query": SQL_QUERY})
    for day in DAYS:
        _same_rows(read_partition(config, _day(day)), _expected(synthetic, day))
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features"], "2026-01-03").success


def test_postgres_query_gives_the_synthetic_rows(postgres_database, write_config, synthetic, monkeypatch):
    url = postgres_database("source")
    synthetic.to_sql("events", sa.create_engine(url), index=False)
    monkeypatch.setenv("WAREHOUSE_URL", url)
    config = write_config(source={"kind": "sql", "url": "${WAREHOUSE_URL}", "query": SQL_QUERY})
    for day in DAYS:
        _same_rows(read_partition(config, _day(day)), _expected(synthetic, day))
