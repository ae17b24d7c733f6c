"""Reads the configured source, one daily partition (or the whole table) at a time."""

from __future__ import annotations

import datetime as dt
import glob
import os
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from nexus_assets.data.synthetic import generate_day
from nexus_resources.config import FileSource, NexusConfig, SqlSource, SyntheticSource


def read_partition(config: NexusConfig, day: dt.date | None) -> pd.DataFrame:
    """Rows of the source for `day` (all rows when the dataset is not partitioned), as stored."""
    source = config.dataset.source
    if isinstance(source, SyntheticSource):
        assert day is not None, "the synthetic source is always partitioned"
        return generate_day(source, day)
    if isinstance(source, FileSource):
        frame = _read_files(config, source)
    elif isinstance(source, SqlSource):
        frame = _read_sql(source, day)
    else:  # pragma: no cover - the config model admits no other kind
        raise TypeError(f"unknown source {source!r}")
    return _only_day(frame, config.dataset.timestamp, day)


def _read_files(config: NexusConfig, source: FileSource) -> pd.DataFrame:
    pattern = config.resolve_path(source.path)
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"source.path {source.path!r} matches no file (looked for {pattern})")
    frames = []
    for path in paths:
        kind = source.format or Path(path).suffix.lstrip(".").lower()
        if kind == "csv":
            frames.append(pd.read_csv(path))
        elif kind in ("parquet", "pq"):
            frames.append(pd.read_parquet(path))
        else:
            raise ValueError(f"{path}: cannot tell CSV from Parquet; set source.format")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _read_sql(source: SqlSource, day: dt.date | None) -> pd.DataFrame:
    engine = sa.create_engine(os.path.expandvars(source.url))
    params = {}
    if day is not None:
        start = pd.Timestamp(day)
        params = {"start": start.isoformat(sep=" "), "end": (start + pd.Timedelta(days=1)).isoformat(sep=" ")}
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sa.text(source.query), connection, params=params)
    finally:
        engine.dispose()


def _only_day(frame: pd.DataFrame, timestamp: str | None, day: dt.date | None) -> pd.DataFrame:
    """Keep the day's rows; the timestamp column becomes datetime, every other column stays as read."""
    if timestamp is None or timestamp not in frame.columns:
        return frame.reset_index(drop=True)
    parsed = pd.to_datetime(frame[timestamp], errors="coerce")
    unparsed = parsed.isna() & frame[timestamp].notna()
    if unparsed.any():
        rows = list(frame.index[unparsed][:5])
        raise ValueError(
            f"timestamp column {timestamp!r}: {int(unparsed.sum())} value(s) are not timestamps, so no partition "
            f"can hold them (rows {rows}: {list(frame.loc[rows, timestamp])}); fix them at the source"
        )
    frame = frame.assign(**{timestamp: parsed})
    if day is None:
        return frame.reset_index(drop=True)
    start = pd.Timestamp(day)
    in_day = (frame[timestamp] >= start) & (frame[timestamp] < start + pd.Timedelta(days=1))
    return frame.loc[in_day].reset_index(drop=True)
