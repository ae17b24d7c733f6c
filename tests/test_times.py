"""Time as users write it, on real tables: offsets and `Z`, naive local times, epoch seconds, month names and
separate year / month / day columns are read as times in `dataset.timezone`; the cadence comes from the distinct
times (a yearly survey is yearly, not a month of rows and eleven empty ones)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from vega_datasets import local_data

from nexus_assets.data.sources import read_partition
from nexus_assets.partitions import partitioning

ZONE = "America/Los_Angeles"


def _config(write_config, path: str, **dataset):
    base = {"id_column": None, "columns": None, "classes": None, "start_date": None, "end_date": None}
    changes = {"dataset": base | dataset, "checks": {"ranges": None}}
    return write_config(changes, source={"kind": "file", "path": path})


def _seattle_hours(written) -> pd.DataFrame:
    """Seattle's hourly temperatures of 2010 (Seattle's local time), the time column as `written` writes it."""
    frame = local_data.seattle_temps()
    local = frame["date"].dt.tz_localize(ZONE, ambiguous="NaT", nonexistent="NaT")
    return frame[local.notna()].assign(date=written(local[local.notna()]))


WRITTEN = {
    "iso with offsets": lambda local: local.map(pd.Timestamp.isoformat),  # 2010-01-01T00:00:00-08:00
    "utc with Z": lambda local: local.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "naive local": lambda local: local.dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S"),
    "epoch seconds": lambda local: local.dt.tz_convert("UTC").astype("int64") // 10**9,
}


@pytest.mark.parametrize("written", WRITTEN, ids=list(WRITTEN))
def test_timestamps_as_written_land_in_the_local_day(tmp_path, write_config, written):
    _seattle_hours(WRITTEN[written]).to_csv(tmp_path / "temps.csv", index=False)
    config = _config(write_config, "temps.csv", target="temp", task="regression", timestamp="date", timezone=ZONE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas parsing warning reaches the user
        partitions = partitioning(config)
        day = read_partition(config, (pd.Timestamp("2010-01-05"), pd.Timestamp("2010-01-06")))
    assert partitions.cadence == "daily" and partitions.keys()[0] == "2010-01-01"
    assert f"days starting in {ZONE}" in partitions.note
    assert len(day) == 24 and day["date"].dt.hour.tolist() == list(range(24)), "the local day's 24 hours"
    assert day["temp"].iloc[0] == local_data.seattle_temps().set_index("date").loc["2010-01-05 00:00", "temp"]


def test_the_time_zone_decides_where_a_day_starts(tmp_path, write_config):
    _seattle_hours(WRITTEN["utc with Z"]).to_csv(tmp_path / "temps.csv", index=False)
    utc = _config(write_config, "temps.csv", target="temp", task="regression", timestamp="date")
    day = read_partition(utc, (pd.Timestamp("2010-01-05"), pd.Timestamp("2010-01-06")))
    assert day["date"].dt.hour.tolist() == list(range(24)) and day["temp"].iloc[0] == pytest.approx(
        local_data.seattle_temps().set_index("date").loc["2010-01-04 16:00", "temp"]
    ), "midnight UTC is 4 pm the day before in Seattle"


def test_month_names_are_read_and_too_few_rows_a_month_make_longer_periods(tmp_path, write_config):
    stocks = local_data.stocks()  # five symbols, one price a month, 2000-2010
    stocks.assign(date=stocks["date"].dt.strftime("%b-%Y")).to_csv(tmp_path / "stocks.csv", index=False)
    partitions = partitioning(_config(write_config, "stocks.csv", target="price", task="regression", timestamp="date"))
    assert (
        "month-year ('Mar-2018')" in partitions.note
        and "timestamps every month" in partitions.note
        and "periods made yearly to hold 20+ rows" in partitions.note
    )
    assert partitions.cadence == "yearly" and partitions.keys()[:2] == ["2000-01-01", "2001-01-01"]


def test_year_month_and_day_columns_are_assembled_into_the_timestamp(tmp_path, write_config):
    weather = local_data.seattle_weather()
    parts = weather.assign(year=weather["date"].dt.year, month=weather["date"].dt.month, day=weather["date"].dt.day)
    parts.drop(columns="date").to_csv(tmp_path / "weather.csv", index=False)
    config = _config(
        write_config,
        "weather.csv",
        target="temp_max",
        task="regression",
        timestamp="date",
        timestamp_parts={"year": "year", "month": "month", "day": "day"},
    )
    partitions = partitioning(config)
    assert partitions.cadence == "monthly" and len(partitions.keys()) == 48
    february = read_partition(config, (pd.Timestamp("2012-02-01"), pd.Timestamp("2012-03-01")))
    assert len(february) == 29 and february["date"].min() == pd.Timestamp("2012-02-01")


def test_one_date_a_year_is_a_yearly_cadence(tmp_path, write_config):
    iowa = local_data.iowa_electricity()  # three sources' generation, one row each a year, 2001-2017
    iowa.to_csv(tmp_path / "iowa.csv", index=False)
    partitions = partitioning(
        _config(write_config, "iowa.csv", target="net_generation", task="regression", timestamp="year")
    )
    assert partitions.cadence == "yearly" and len(partitions.keys()) == 17
    assert "timestamps every year" in partitions.note


def test_an_unknown_time_zone_is_named_in_the_config_error(write_config):
    from nexus_core.config import ConfigError

    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        write_config({"dataset": {"timezone": "Mars/Olympus"}})


def test_a_price_every_five_years_is_irregular_and_its_empty_years_warn(tmp_path, write_config, instance):
    from nexus_cli.runs import materialize
    from nexus_defs.definitions import build_definitions

    wheat = local_data.wheat()  # Playfair's wheat prices, every five years; pandas' times begin in 1677
    wheat[wheat["year"] >= 1700].to_csv(tmp_path / "wheat.csv", index=False)
    config = _config(write_config, "wheat.csv", target="wheat", task="regression", timestamp="year")
    partitions = partitioning(config)
    assert (
        partitions.cadence == "yearly" and partitions.sparse and partitions.keys()[:2] == ["1700-01-01", "1701-01-01"]
    )
    assert (
        "timestamps every 5 years" in partitions.note
        and "irregular: 79% of periods are empty, which warns instead of blocking" in partitions.note
    )
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features"], "1700-01-01").success
    result = materialize(defs, instance, ["raw_data", "features"], "1701-01-01")
    assert result.success, "a year without a price is normal for this data"
    [empty] = [e for e in result.get_asset_check_evaluations() if e.check_name == "non_empty"]
    assert not empty.passed and empty.severity.value == "WARN" and "irregular times" in empty.description


@pytest.mark.parametrize(
    ("scale", "unit"), [(1, "seconds"), (10**3, "milliseconds"), (10**6, "microseconds"), (10**9, "nanoseconds")]
)
def test_epoch_integers_are_read_in_the_unit_their_size_shows(tmp_path, write_config, scale, unit):
    hours = _seattle_hours(lambda local: local.dt.tz_convert("UTC").astype("int64") // 10**9 * scale)
    hours.to_csv(tmp_path / "temps.csv", index=False)
    config = _config(write_config, "temps.csv", target="temp", task="regression", timestamp="date", timezone=ZONE)
    partitions = partitioning(config)
    assert f"timestamps read as epoch {unit} (UTC)" in partitions.note and partitions.keys()[0] == "2010-01-01"
    assert len(read_partition(config, (pd.Timestamp("2010-01-05"), pd.Timestamp("2010-01-06")))) == 24


def test_a_column_of_small_integers_named_as_the_timestamp_is_refused_in_one_line(tmp_path, write_config):
    hours = _seattle_hours(lambda local: local.dt.tz_convert("UTC").astype("int64") // 10**9)
    hours.assign(reading=range(1, len(hours) + 1)).to_csv(tmp_path / "temps.csv", index=False)
    config = _config(write_config, "temps.csv", target="temp", task="regression", timestamp="reading")
    with pytest.raises(ValueError) as refused:
        partitioning(config)
    assert str(refused.value).startswith(
        "timestamp column 'reading': values such as 1 read as 1970-01-01 00:00:01 (epoch seconds (UTC)) all fall in "
        "1970: these are not times since 1970 in that unit; set dataset.timestamp_unit"
    )


def test_a_unit_set_in_the_config_is_used_and_a_wrong_one_is_refused(tmp_path, write_config):
    minutes = _seattle_hours(lambda local: local.dt.tz_convert("UTC").astype("int64") // 10**9 // 60)
    minutes.to_csv(tmp_path / "temps.csv", index=False)
    shared = {"target": "temp", "task": "regression", "timestamp": "date", "timezone": ZONE}
    with pytest.raises(ValueError, match="all fall in 1970: these are not times since 1970 in that unit"):
        partitioning(_config(write_config, "temps.csv", **shared))  # minutes look like seconds of 1970
    seconds = _seattle_hours(lambda local: local.dt.tz_convert("UTC").astype("int64") // 10**9)
    seconds.to_csv(tmp_path / "temps.csv", index=False)
    wrong = _config(write_config, "temps.csv", timestamp_unit="ns", **shared)
    with pytest.raises(ValueError, match=r"read as 1970-01-01 00:00:01\.\d+ \(epoch nanoseconds \(UTC\) \(dataset"):
        partitioning(wrong)
    right = partitioning(_config(write_config, "temps.csv", timestamp_unit="s", **shared))
    assert "timestamps read as epoch seconds (UTC) (dataset.timestamp_unit)" in right.note
