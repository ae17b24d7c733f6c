"""Timestamps as users write them, read as plain (naive) times in `dataset.timezone`.

A column's format is found once, on a sample of its values, and then used for every row, so a partition never
depends on what pandas would guess for its own rows and no parsing warning reaches the user. Values with a UTC
offset (or `Z`) are converted to the time zone; values without one are taken to be in it already.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

from nexus_core.config import TimestampParts

# Tried in order on a sample; the first that reads nearly every value wins.
_FORMATS = (
    ("ISO8601", "ISO 8601"),
    ("%b-%Y", "month-year ('Mar-2018')"),
    ("%b %Y", "month year ('Mar 2018')"),
    ("%B %Y", "month year ('March 2018')"),
    ("%b %d %Y", "month day year ('Jan 1 2000')"),
    ("%d %b %Y", "day month year ('1 Jan 2000')"),
    ("%m/%d/%Y", "month/day/year"),
    ("%d/%m/%Y", "day/month/year"),
    ("%m/%d/%Y %H:%M", "month/day/year hour:minute"),
    ("%d/%m/%Y %H:%M", "day/month/year hour:minute"),
    ("%d.%m.%Y", "day.month.year"),
    ("%Y%m%d", "yyyymmdd"),
)
_EPOCH_UNITS = ((1e11, "s", "seconds"), (1e14, "ms", "milliseconds"), (1e17, "us", "microseconds"))
_SAMPLE = 2_000
_READ_SHARE = 0.95
# A time followed by Z or an offset: the text names its own zone.
_OFFSET = r"\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"


@dataclass(frozen=True)
class TimeFormat:
    """How a column's values are read: `kind` is datetime (already times), year, epoch, or text with `format`."""

    kind: str
    format: str | None = None
    label: str = ""

    def describe(self, timezone: str) -> str:
        return f"timestamps read as {self.label}, days starting in {timezone}"


def infer_format(raw: pd.Series, unit: str | None = None) -> TimeFormat:
    """The format of a timestamp column, from a sample of its values; numbers since 1970 in `unit` when given.
    A format that would read the sample's many distinct values as one time, or numbers into 1970, is refused."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        aware = getattr(raw.dt, "tz", None) is not None
        return TimeFormat("datetime", label="stored times" + (" with a time zone" if aware else ""))
    present = raw.dropna()
    sample = present.drop_duplicates().head(_SAMPLE)
    numbers = pd.to_numeric(sample, errors="coerce")
    if len(sample) and numbers.notna().all() and pd.api.types.is_numeric_dtype(numbers):
        if unit is None and ((numbers % 1 == 0) & numbers.between(1000, 2999)).all():
            return TimeFormat("year", label="year numbers")
        # The unit the magnitude shows: a time since 1973 in seconds is above 1e8, so each unit owns a range.
        size = numbers.abs().median()
        found = next(((u, n) for bound, u, n in _EPOCH_UNITS if size < bound), ("ns", "nanoseconds"))
        name = dict((u, n) for _, u, n in _EPOCH_UNITS).get(unit, "nanoseconds") if unit else found[1]
        how = " (dataset.timestamp_unit)" if unit else ""
        return _refuse_unlikely(raw.name, sample, TimeFormat("epoch", unit or found[0], f"epoch {name} (UTC){how}"))
    text = sample.astype(str).str.strip()
    offsets = " with UTC offsets" if text.str.contains(_OFFSET).any() else ""
    for fmt, label in _FORMATS:
        read = _text(text, fmt, "UTC").notna().mean() if len(text) else 1.0
        if read >= _READ_SHARE:
            return _refuse_unlikely(raw.name, sample, TimeFormat("text", fmt, label + offsets))
    return TimeFormat("text", "mixed", "dates of mixed formats, each read on its own" + offsets)


_MANY_DISTINCT = 100  # distinct values in the sample that may not all read as one time


def _refuse_unlikely(column: object, sample: pd.Series, fmt: TimeFormat) -> TimeFormat:
    """`fmt`, unless it reads the sample as times no one means: all in 1970 (numbers read in too large a unit, or
    counters that are no times at all), or many distinct values as one time."""
    parsed = parse(sample, fmt, "UTC")
    read = parsed.dropna()
    if read.empty:
        return fmt
    example = sample.loc[read.index[0]]
    example = example.item() if hasattr(example, "item") else example
    seen = f"values such as {example!r} read as {read.iloc[0]} ({fmt.label})"
    if fmt.kind == "epoch" and read.median() < pd.Timestamp("1971-01-01"):
        raise ValueError(
            f"timestamp column {column!r}: {seen} all fall in 1970: these are not times since 1970 in that unit; "
            "set dataset.timestamp_unit (s, ms, us or ns), or name the column that holds the time in "
            "dataset.timestamp"
        )
    if len(sample) >= _MANY_DISTINCT and read.nunique() == 1:
        raise ValueError(
            f"timestamp column {column!r}: {seen}: {len(sample)} distinct values all read as the same time; name "
            "the column that holds the time in dataset.timestamp, or set dataset.timestamp_unit for numbers since 1970"
        )
    return fmt


def parse(raw: pd.Series, fmt: TimeFormat, timezone: str) -> pd.Series:
    """`raw` as naive datetimes in `timezone`; NaT where a value is not a time in `fmt`."""
    if fmt.kind == "datetime":
        values = pd.to_datetime(raw, errors="coerce")
        return values.dt.tz_convert(timezone).dt.tz_localize(None) if values.dt.tz is not None else values
    if fmt.kind == "year":
        years = pd.to_numeric(raw, errors="coerce")
        years = years.where((years % 1 == 0) & years.between(1000, 2999))
        return pd.to_datetime(years.astype("Int64").astype(str), format="%Y", errors="coerce")
    if fmt.kind == "epoch":
        values = pd.to_datetime(pd.to_numeric(raw, errors="coerce"), unit=fmt.format, errors="coerce", utc=True)
        return values.dt.tz_convert(timezone).dt.tz_localize(None)
    return _text(raw.astype("string").str.strip(), fmt.format, timezone).astype("datetime64[ns]")


def assemble(frame: pd.DataFrame, parts: TimestampParts) -> pd.Series:
    """The time that year / month / day / hour columns hold together; NaT where one of them is not readable."""
    named = {"year": parts.year, "month": parts.month, "day": parts.day, "hour": parts.hour}
    values = {unit: pd.to_numeric(frame[column], errors="coerce") for unit, column in named.items() if column}
    values.setdefault("month", 1)
    values.setdefault("day", 1)
    return pd.to_datetime(pd.DataFrame(values, index=frame.index), errors="coerce")


def raw_of(frame: pd.DataFrame, column: str, parts: TimestampParts | None) -> pd.Series:
    """What a user wrote for each row's time: the column, or its parts joined by '-'."""
    if parts is None:
        return frame[column]
    text = [frame[column].astype("string") for column in parts.columns]
    joined = text[0].fillna("?")
    for part in text[1:]:
        joined = joined + "-" + part.fillna("?")
    return joined.rename(None)


def _text(text: pd.Series, fmt: str, timezone: str) -> pd.Series:
    aware = text.str.contains(_OFFSET, na=False)
    with warnings.catch_warnings():  # formats are chosen above; what does not read is NaT and reported
        warnings.simplefilter("ignore")
        out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        if (~aware).any():
            out[~aware] = pd.to_datetime(text[~aware], format=fmt, errors="coerce")
        if aware.any():
            utc = pd.to_datetime(text[aware], format=fmt, errors="coerce", utc=True)
            out[aware] = utc.dt.tz_convert(timezone).dt.tz_localize(None)
    return out
