"""Partitions that fit the data: daily, weekly or monthly windows of the timestamp, one per file of a glob, or
none for one table.

The cadence and the range come from `dataset.partitions`, `start_date` and `end_date`; for a file source, what is
left out is inferred from the timestamp column: the shortest cadence whose periods are nearly all filled with at
least `MIN_ROWS_PER_PARTITION` rows, from the first row's period to the last one's. Without a timestamp, a glob of
files gets one (dynamic) partition per file, added by `source_files_sensor` as files arrive.
"""

from __future__ import annotations

import datetime as dt
import glob
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from nexus_core.config import NexusConfig
from nexus_core.files import file_keys
from nexus_core.names import FILES_PARTITIONS

MIN_ROWS_PER_PARTITION = 20
_FILLED = 0.9  # share of periods that must hold rows for a cadence to fit
_FREQ = {"daily": "D", "weekly": "W", "monthly": "M"}


@dataclass(frozen=True)
class Partitioning:
    cadence: str  # daily | weekly | monthly | files | none
    start: dt.date | None
    end: dt.date | None  # exclusive
    note: str  # how it was chosen, shown to the user
    files: tuple[str, ...] = ()  # for `files`: the partition keys of the files there are now

    @property
    def partitioned(self) -> bool:
        return self.cadence != "none"

    @property
    def periods(self) -> bool:
        """Whether partitions are periods of time (so data arrives, and labels after it, as time passes)."""
        return self.cadence in _FREQ

    def definition(self) -> dg.PartitionsDefinition | None:
        if not self.partitioned:
            return None
        if self.cadence == "files":
            return dg.DynamicPartitionsDefinition(name=FILES_PARTITIONS)
        start, end = self.start.isoformat(), self.end.isoformat() if self.end else None
        if self.cadence == "daily":
            return dg.DailyPartitionsDefinition(start_date=start, end_date=end)
        if self.cadence == "weekly":
            # Weeks start on the start date's weekday (Dagster counts day_offset from Sunday).
            return dg.WeeklyPartitionsDefinition(
                start_date=start, end_date=end, day_offset=(self.start.weekday() + 1) % 7
            )
        return dg.MonthlyPartitionsDefinition(start_date=start, end_date=end)

    def keys(self) -> list[str | None]:
        """Every partition key in the range, or of the files there are now (a single None for one table)."""
        if self.cadence == "files":
            return list(self.files)
        definition = self.definition()
        return [None] if definition is None else definition.get_partition_keys()


_cache: dict[tuple, Partitioning] = {}


def partitioning(config: NexusConfig) -> Partitioning:
    """The dataset's partitions, as configured or inferred (inferred once per config and source files)."""
    from nexus_assets.data.sources import source_fingerprint, timestamps

    key = (config.path, config.dataset.model_dump_json(), source_fingerprint(config))
    if key not in _cache:
        _cache[key] = _decide(config, timestamps)
    return _cache[key]


def partitions_def(config: NexusConfig) -> dg.PartitionsDefinition | None:
    return partitioning(config).definition()


def partition_of(context: dg.AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp] | str | None:
    """What a run reads: [start, end) of its time partition, its file's key, or None for one table."""
    if not context.has_partition_key:
        return None
    if isinstance(context.assets_def.partitions_def, dg.DynamicPartitionsDefinition):
        return context.partition_key
    window = context.partition_time_window
    return pd.Timestamp(window.start).tz_localize(None), pd.Timestamp(window.end).tz_localize(None)


def _decide(config: NexusConfig, timestamps) -> Partitioning:
    dataset = config.dataset
    if dataset.partitions == "none":
        return Partitioning("none", None, None, "none (dataset.partitions)")
    if dataset.partitions == "files" or (not dataset.timestamp and dataset.source.kind == "file"):
        keys = tuple(file_keys(config.resolve_path(dataset.source.path)))
        if dataset.partitions == "files" or glob.has_magic(dataset.source.path):
            how = "dataset.partitions" if dataset.partitions else "inferred: the source is a glob of files"
            return Partitioning(
                "files", None, None, f"files ({how}): one partition per file, {len(keys)} now", files=keys
            )
    if not dataset.timestamp:
        return Partitioning(
            "none",
            None,
            None,
            "none: one table without a timestamp column; monitoring needs data that arrives over time: a "
            "timestamp column (dataset.timestamp) or new files matching a glob (dataset.source.path: data/*.csv)",
        )
    if dataset.source.kind != "file" or (dataset.partitions and dataset.start_date and dataset.end_date):
        # Nothing to infer (a large file's timestamps are not read at every definitions load)
        cadence = dataset.partitions or "daily"
        how = "dataset.partitions" if dataset.partitions else f"the default for a {dataset.source.kind} source"
        return Partitioning(cadence, _align(cadence, dataset.start_date), dataset.end_date, f"{cadence} ({how})")
    values = timestamps(config)
    if values.empty:
        raise ValueError(f"timestamp column {dataset.timestamp!r} holds no timestamps; fix it or leave it out")
    cadence, how = (dataset.partitions, "dataset.partitions") if dataset.partitions else _infer(values)
    start = _align(cadence, dataset.start_date or values.min().date())
    end = dataset.end_date or _next_period(cadence, values.max().date())
    return Partitioning(cadence, start, end, f"{cadence} ({how}), {start} to {end}")


def _infer(values: pd.Series) -> tuple[str, str]:
    for cadence, freq in _FREQ.items():
        periods = values.dt.to_period(freq)
        span = (periods.max() - periods.min()).n + 1
        filled, mean_rows = periods.nunique() / span, len(values) / span
        if filled >= _FILLED and mean_rows >= MIN_ROWS_PER_PARTITION:
            return cadence, f"inferred: {mean_rows:.0f} rows per period on average; set dataset.partitions to choose"
    return "monthly", (
        f"inferred: too few rows for shorter periods ({mean_rows:.1f} per month on average); "
        "set dataset.partitions to choose, or none for one table"
    )


def _align(cadence: str, start: dt.date | None) -> dt.date | None:
    """Monthly partitions start on the first of a month."""
    return start.replace(day=1) if start and cadence == "monthly" else start


def _next_period(cadence: str, last: dt.date) -> dt.date:
    if cadence == "daily":
        return last + dt.timedelta(days=1)
    if cadence == "weekly":
        return last + dt.timedelta(days=7)  # past the last week that holds a row, whatever weekday it starts on
    return (last.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
