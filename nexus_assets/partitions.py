"""Partitions that fit the data: daily, weekly, monthly, quarterly or yearly windows of the timestamp, one per file
of a glob, or none for one table.

The cadence and the range come from `dataset.partitions`, `start_date` and `end_date`; for a file source, what is
left out is inferred from the timestamp column: the data's own cadence from the gaps between its distinct days
(one survey a year is yearly however many rows it holds), made longer only while its periods would hold fewer than
`MIN_ROWS_PER_PARTITION` rows on average, from the first row's period to the last one's. Data whose times leave
many periods empty is irregular: its empty periods warn instead of blocking. Without a timestamp, a glob of files
gets one (dynamic) partition per file, added by `source_files_sensor` as files arrive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from nexus_assets.data.sources import source_fingerprint, time_format, timestamps
from nexus_core.config import NexusConfig
from nexus_core.files import file_keys
from nexus_core.names import FILES_PARTITIONS

MIN_ROWS_PER_PARTITION = 20
_FILLED = 0.9  # share of periods that must hold rows for a cadence to be regular
_FREQ = {"daily": "D", "weekly": "W", "monthly": "M", "quarterly": "Q", "yearly": "Y"}
# The longest median gap between distinct days that each cadence stands for.
_GAP_DAYS = {"daily": 1.5, "weekly": 10, "monthly": 45, "quarterly": 135}
_CRON = {"quarterly": "0 0 1 1,4,7,10 *", "yearly": "0 0 1 1 *"}
_LONGEST_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}


@dataclass(frozen=True)
class Partitioning:
    cadence: str  # daily | weekly | monthly | files | none
    start: dt.date | None
    end: dt.date | None  # exclusive
    note: str  # how it was chosen, shown to the user
    files: tuple[str, ...] = ()  # for `files`: the partition keys of the files there are now
    sparse: bool = False  # irregular times: an empty period is normal, so it warns instead of blocking
    timezone: str = "UTC"
    files_name: str = FILES_PARTITIONS  # the dynamic partitions of a file source, named per dataset

    @property
    def partitioned(self) -> bool:
        return self.cadence != "none"

    @property
    def periods(self) -> bool:
        """Whether partitions are periods of time (so data arrives, and labels after it, as time passes)."""
        return self.cadence in _FREQ

    def span(self, periods: int) -> dt.timedelta:
        """At least `periods` periods of time (for time partitions)."""
        return dt.timedelta(days=_LONGEST_DAYS[self.cadence] * periods)

    def closes(self, key: str) -> dt.datetime:
        """When the period of partition `key` ends (for time partitions)."""
        return self.definition().time_window_for_partition_key(key).end

    def definition(self) -> dg.PartitionsDefinition | None:
        if not self.partitioned:
            return None
        if self.cadence == "files":
            return dg.DynamicPartitionsDefinition(name=self.files_name)
        start, end = self.start.isoformat(), self.end.isoformat() if self.end else None
        zone = self.timezone
        if self.cadence == "daily":
            return dg.DailyPartitionsDefinition(start_date=start, end_date=end, timezone=zone)
        if self.cadence == "weekly":
            # Weeks start on the start date's weekday (Dagster counts day_offset from Sunday).
            return dg.WeeklyPartitionsDefinition(
                start_date=start, end_date=end, day_offset=(self.start.weekday() + 1) % 7, timezone=zone
            )
        if self.cadence == "monthly":
            return dg.MonthlyPartitionsDefinition(start_date=start, end_date=end, timezone=zone)
        return dg.TimeWindowPartitionsDefinition(
            cron_schedule=_CRON[self.cadence], start=start, end=end, fmt="%Y-%m-%d", timezone=zone
        )

    def keys(self) -> list[str | None]:
        """Every partition key in the range, or of the files there are now (a single None for one table)."""
        if self.cadence == "files":
            return list(self.files)
        definition = self.definition()
        return [None] if definition is None else definition.get_partition_keys()


_cache: dict[tuple, Partitioning] = {}


def partitioning(config: NexusConfig) -> Partitioning:
    """The dataset's partitions, as configured or inferred (inferred once per config and source files)."""
    key = (config.path, config.scoped, config.dataset.model_dump_json(), source_fingerprint(config))
    if key not in _cache:
        _cache[key] = dataclasses.replace(_decide(config), files_name=config.named(FILES_PARTITIONS))
    return _cache[key]


def partitions_def(config: NexusConfig) -> dg.PartitionsDefinition | None:
    return partitioning(config).definition()


def parts_of(context: dg.AssetExecutionContext) -> dict[str | None, tuple[pd.Timestamp, pd.Timestamp] | str | None]:
    """What each partition of a step (one, or a range) reads: [start, end) of its time window (naive, in the
    partitions' time zone), its file's key, or {None: None} for one table."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return {None: None}
    definition = context.assets_def.partitions_def
    if not isinstance(definition, dg.TimeWindowPartitionsDefinition):
        return {key: key for key in context.partition_keys}
    windows = (definition.time_window_for_partition_key(key) for key in context.partition_keys)
    return {
        key: (pd.Timestamp(window.start).tz_localize(None), pd.Timestamp(window.end).tz_localize(None))
        for key, window in zip(context.partition_keys, windows, strict=True)
    }


def _decide(config: NexusConfig) -> Partitioning:
    dataset = config.dataset
    if dataset.partitions == "none":
        return Partitioning("none", None, None, "none (dataset.partitions)")
    zone = dataset.timezone
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
        start = _align(cadence, dataset.start_date)
        return Partitioning(cadence, start, dataset.end_date, f"{cadence} ({how})", timezone=zone)
    values = timestamps(config)
    if values.empty:
        raise ValueError(f"timestamp column {dataset.timestamp!r} holds no timestamps; fix it or leave it out")
    if dataset.partitions:
        cadence, how, sparse = dataset.partitions, "dataset.partitions", False
    else:
        cadence, how, sparse = _infer(values)
    start = _align(cadence, dataset.start_date or values.min().date())
    end = dataset.end_date or _next_period(cadence, values.max().date())
    read_as = time_format(config).describe(zone)
    note = f"{cadence} ({how}), {start} to {end}; {read_as}"
    return Partitioning(cadence, start, end, note, sparse=sparse, timezone=zone)


def _infer(values: pd.Series) -> tuple[str, str, bool]:
    """(cadence, why, sparse) from the gaps between distinct days, then the rows per period."""
    days = pd.Series(values.dt.normalize().unique()).sort_values()
    gap = float(days.diff().dt.days.median()) if len(days) > 1 else 1.0
    own = next((cadence for cadence, most in _GAP_DAYS.items() if gap <= most), "yearly")
    cadences = list(_FREQ)
    for cadence in cadences[cadences.index(own) :]:
        periods = values.dt.to_period(_FREQ[cadence])
        span = (periods.max() - periods.min()).n + 1
        filled, mean_rows = periods.nunique() / span, len(values) / periods.nunique()
        if mean_rows >= MIN_ROWS_PER_PARTITION:
            break
    why = f"timestamps every {_gap(gap)} (median gap between distinct days)"
    if cadence != own:
        why += f", periods made {cadence} to hold {MIN_ROWS_PER_PARTITION}+ rows"
    why += f"; {mean_rows:.0f} rows per period on average"
    sparse = filled < _FILLED
    if sparse:
        why += f"; irregular: {1 - filled:.0%} of periods are empty, which warns instead of blocking"
    return cadence, f"inferred: {why}; set dataset.partitions to choose", sparse


def _gap(days: float) -> str:
    """A gap in the unit people would name it in: 'day', '3 days', '2 weeks', 'month', '5 years'."""
    unit, size = next(((u, s) for u, s in _UNITS if days >= s * 0.95), ("day", 1))
    count = round(days / size, 1)
    return unit if count == 1 else f"{count:g} {unit}s"


_UNITS = (("year", 365.25), ("month", 30.44), ("week", 7), ("day", 1))


def _align(cadence: str, start: dt.date | None) -> dt.date | None:
    """Monthly, quarterly and yearly partitions start on the first day of their period."""
    if not start or cadence in ("daily", "weekly"):
        return start
    if cadence == "yearly":
        return start.replace(month=1, day=1)
    month = start.month if cadence == "monthly" else start.month - (start.month - 1) % 3
    return start.replace(month=month, day=1)


def _next_period(cadence: str, last: dt.date) -> dt.date:
    if cadence == "daily":
        return last + dt.timedelta(days=1)
    if cadence == "weekly":
        return last + dt.timedelta(days=7)  # past the last week that holds a row, whatever weekday it starts on
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}[cadence]
    first = _align(cadence, last)
    index = first.year * 12 + first.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)
