"""Reads the configured source one partition (or the whole table) at a time.

A file source is read for the partition's rows only: Parquet through a pyarrow dataset filter (row groups outside
the window are skipped), CSV in chunks of which only the window's rows are kept, so a bad value elsewhere never
reaches this partition and memory holds one partition, not the file.
"""

from __future__ import annotations

import codecs
import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import sqlalchemy as sa

from nexus_assets.data import times
from nexus_assets.data.synthetic import delayed_labels, generate_day
from nexus_core.config import FileSource, NexusConfig, SqlSource, SyntheticSource
from nexus_core.files import file_format, file_of, source_files

Window = tuple[pd.Timestamp, pd.Timestamp] | None
Part = Window | str  # a time window, or the key of one file
Locate = Callable[[list[int]], list[str]]  # rows of a partition -> where they are in the source files
_CSV_CHUNK_ROWS = 200_000


class SourceReadError(ValueError):
    """A source that cannot be read; the message names the file, and the row or byte where known."""


@dataclass
class Coverage:
    """Rows of a file source that no partition holds: unparseable timestamps, or before or after the range."""

    unparseable: int = 0
    before: int = 0
    after: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def outside(self) -> int:
        return self.unparseable + self.before + self.after


def read_partition(config: NexusConfig, part: Part) -> pd.DataFrame:
    """Rows of the source in `part` as stored: a time window [start, end), one file's key, or None for all rows."""
    source = config.dataset.source
    if isinstance(part, str):
        return _read_file(_file_of(config, part), config, None)
    window = part
    if isinstance(source, SyntheticSource):
        assert window is not None, "the synthetic source is always partitioned"
        days = pd.date_range(window[0], window[1], inclusive="left")
        return pd.concat([generate_day(source, day.date()) for day in days], ignore_index=True)
    if isinstance(source, SqlSource):
        return _parsed(_read_sql(source, window), config, window)
    frames = [_read_file(path, config, window) for path in _files(config, source)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def labels_known(config: NexusConfig, key: str, rows: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """The labels of partition `key`'s `rows` known on `as_of`: the synthetic source delivers them
    `label_delay_days` late; other sources' rows carry their label when they land."""
    source = config.dataset.source
    if isinstance(source, SyntheticSource):
        return delayed_labels(source, dt.date.fromisoformat(key), as_of)
    return rows


def source_fingerprint(config: NexusConfig) -> tuple:
    """What identifies the source's current content cheaply: each file's path, size and modification time."""
    source = config.dataset.source
    if not isinstance(source, FileSource):
        return ()
    return tuple((path, os.path.getsize(path), os.path.getmtime(path)) for path in _files(config, source))


def _file_of(config: NexusConfig, key: str) -> str:
    path = file_of(config.resolve_path(config.dataset.source.path), key)
    if not os.path.isfile(path):
        raise SourceReadError(f"{path}: the file of partition {key!r} is gone")
    return path


def timestamps(config: NexusConfig) -> pd.Series:
    """The timestamp column of every file of a file source, parsed (unparseable values dropped)."""
    values = pd.concat([parsed for _, _, parsed in _timestamp_columns(config)[1]])
    return values.dropna().reset_index(drop=True)


def locator(config: NexusConfig, part: Part) -> Locate | None:
    """Where the rows `read_partition(config, part)` gives come from: `events.csv line 247` for a CSV (a value
    spanning lines shifts what follows), `events.parquet row 246` for Parquet; None for sources without files.
    Found from the timestamp column already read for `coverage`, so rows are located without reading the file
    again: a window's rows are, in order, the file's rows whose time falls in it."""
    source = config.dataset.source
    if not isinstance(source, FileSource):
        return None
    if isinstance(part, str) or part is None:  # one file's rows, or one table's, in the file's order
        paths = [_file_of(config, part)] if part else _files(config, source)
        return (lambda rows: [_place(paths[0], source, row) for row in rows]) if len(paths) == 1 else None
    if config.dataset.timestamp is None:
        return None

    def locate(rows: list[int]) -> list[str]:
        # Found when asked (a failed check), not for each partition of a range that passes.
        places = [
            (path, np.flatnonzero(((parsed >= part[0]) & (parsed < part[1])).to_numpy()))
            for path, _, parsed in _timestamp_columns(config)[1]
        ]
        found = []
        for row in rows:
            for path, inside in places:
                if row < len(inside):
                    found.append(_place(path, source, int(inside[row])))
                    break
                row -= len(inside)
        return found

    return locate


def _place(path: str, source: FileSource, position: int) -> str:
    if file_format(path, source.format) == "parquet":
        return f"{Path(path).name} row {position}"
    return f"{Path(path).name} line {position + 2}"  # after the header line


def time_format(config: NexusConfig) -> times.TimeFormat | None:
    """How a file source's timestamps are read (found once from the files); None for other sources."""
    if not isinstance(config.dataset.source, FileSource) or config.dataset.timestamp is None:
        return None
    return _timestamp_columns(config)[0]


def coverage(config: NexusConfig, start: dt.date | None, end: dt.date | None) -> Coverage:
    """How many rows of a file source fall outside [start, end) or have no readable timestamp, with examples."""
    found = Coverage()
    if not isinstance(config.dataset.source, FileSource) or config.dataset.timestamp is None:
        return found
    for path, raw, parsed in _timestamp_columns(config)[1]:
        bad = parsed.isna() & raw.notna()
        early = parsed < pd.Timestamp(start) if start else pd.Series(False, index=raw.index)
        late = parsed >= pd.Timestamp(end) if end else pd.Series(False, index=raw.index)
        found.unparseable += int(bad.sum())
        found.before += int(early.sum())
        found.after += int(late.sum())
        for what, mask in (("not a timestamp", bad), (f"before {start}", early), (f"on or after {end}", late)):
            # Row numbers as a person counts them in the file: the header is line 1.
            found.examples += [f"{path} line {i + 2}: {raw[i]!r} ({what})" for i in raw.index[mask][:3]]
    return found


def _files(config: NexusConfig, source: FileSource) -> list[str]:
    paths = source_files(config.resolve_path(source.path))
    if not paths:
        raise SourceReadError(f"dataset.source.path {source.path!r} matches no file any more")
    return paths


Columns = list[tuple[str, pd.Series, pd.Series]]
_timestamps_read: dict[tuple, tuple[times.TimeFormat, Columns]] = {}


def _timestamp_columns(config: NexusConfig) -> tuple[times.TimeFormat, Columns]:
    """The format of a file source's timestamps and (path, raw, parsed) of each file's timestamp column, read once
    per process while the files stay the same (partitions are inferred from it when definitions load, and each
    partition's `in_range` check counts it)."""
    dataset = config.dataset
    key = (
        dataset.timestamp,
        dataset.timestamp_parts,
        dataset.timestamp_unit,
        dataset.timezone,
        source_fingerprint(config),
    )
    if key not in _timestamps_read:
        _timestamps_read.clear()  # one source's columns at a time: a changed file replaces them
        read = [(path, _timestamp_column(path, config)) for path in _files(config, dataset.source)]
        parts = dataset.timestamp_parts
        fmt = (
            times.TimeFormat("parts", label=", ".join(parts.columns))
            if parts
            else times.infer_format(read[0][1][0].rename(dataset.timestamp), dataset.timestamp_unit)
        )
        _timestamps_read[key] = fmt, [(path, raw, _times(config, fmt, raw, frame)) for path, (raw, frame) in read]
    return _timestamps_read[key]


def _timestamp_column(path: str, config: NexusConfig) -> tuple[pd.Series, pd.DataFrame]:
    """(what the user wrote for each row's time, the columns it comes from)."""
    source, column, parts = config.dataset.source, config.dataset.timestamp, config.dataset.timestamp_parts
    columns = parts.columns if parts else [column]
    if file_format(path, source.format) == "parquet":
        frame = pads.dataset(path, format="parquet").to_table(columns=columns).to_pandas()
    else:
        frame = _csv(path, source, usecols=columns)
    return times.raw_of(frame, column, parts).reset_index(drop=True), frame.reset_index(drop=True)


def _times(config: NexusConfig, fmt: times.TimeFormat, raw: pd.Series, frame: pd.DataFrame) -> pd.Series:
    parts = config.dataset.timestamp_parts
    return times.assemble(frame, parts) if parts else times.parse(raw, fmt, config.dataset.timezone)


def _read_file(path: str, config: NexusConfig, window: Window) -> pd.DataFrame:
    source, timestamp = config.dataset.source, config.dataset.timestamp
    if file_format(path, source.format) == "parquet":
        dataset = pads.dataset(path, format="parquet")
        kept = None
        if window is not None and _is_timestamp(dataset, timestamp) and not config.dataset.timestamp_parts:
            column, zone = pads.field(timestamp), dataset.schema.field(timestamp).type.tz
            start, end = (t.tz_localize(config.dataset.timezone) if zone else t for t in window)
            kept = (column >= start.to_pydatetime()) & (column < end.to_pydatetime())
        return _parsed(dataset.to_table(filter=kept).to_pandas(), config, window)
    if window is None or timestamp is None:
        return _parsed(_csv(path, source), config, window)
    parts = [_parsed(chunk, config, window) for chunk in _csv_chunks(path, source)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _is_timestamp(dataset: pads.Dataset, column: str | None) -> bool:
    return column in dataset.schema.names and pa.types.is_timestamp(dataset.schema.field(column).type)


def _csv(path: str, source: FileSource, **options) -> pd.DataFrame:
    """pandas' CSV reader, with its failures turned into errors that name the file and the row or byte."""
    with _naming_failures(path, source):
        return pd.read_csv(path, encoding=source.encoding, **options)


def _csv_chunks(path: str, source: FileSource) -> Iterator[pd.DataFrame]:
    """The file in chunks of `_CSV_CHUNK_ROWS` rows, one at a time in memory."""
    with (
        _naming_failures(path, source),
        pd.read_csv(path, encoding=source.encoding, chunksize=_CSV_CHUNK_ROWS) as reader,
    ):
        yield from reader


@contextmanager
def _naming_failures(path: str, source: FileSource) -> Iterator[None]:
    try:
        yield
    except pd.errors.EmptyDataError:
        raise SourceReadError(f"{path}: the file is empty (no header, no rows)") from None
    except UnicodeDecodeError:
        raise SourceReadError(_encoding_problem(path, source.encoding)) from None
    except pd.errors.ParserError as exc:
        raise SourceReadError(f"{path}: not readable as CSV: {str(exc).strip()}") from None


def _encoding_problem(path: str, encoding: str) -> str:
    """Where the first byte that is not `encoding` text is, by byte offset and line."""
    decoder, offset, line = codecs.getincrementaldecoder(encoding)(), 0, 1
    with open(path, "rb") as handle:
        while block := handle.read(1 << 16):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                position = offset + exc.start
                line += block[: exc.start].count(b"\n")
                return (
                    f"{path}: byte {position} (line {line}) is not {encoding} text "
                    f"({block[exc.start : exc.start + 1]!r}); convert the file or set dataset.source.encoding"
                )
            offset, line = offset + len(block), line + block.count(b"\n")
    return f"{path}: not {encoding} text; set dataset.source.encoding"


def _read_sql(source: SqlSource, window: Window) -> pd.DataFrame:
    engine = sa.create_engine(os.path.expandvars(source.url))
    params = {}
    if window is not None:
        params = {"start": window[0].isoformat(sep=" "), "end": window[1].isoformat(sep=" ")}
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sa.text(source.query), connection, params=params)
    finally:
        engine.dispose()


def _parsed(frame: pd.DataFrame, config: NexusConfig, window: Window) -> pd.DataFrame:
    """The window's rows; the timestamp column becomes datetime (naive, in `dataset.timezone`), assembled from its
    parts where configured; every other column stays as read. Rows whose timestamp cannot be read belong to no
    window (they are counted by `coverage`)."""
    timestamp, parts = config.dataset.timestamp, config.dataset.timestamp_parts
    if timestamp is None or not (parts or timestamp in frame.columns):
        return frame.reset_index(drop=True)
    if parts:
        parsed = times.assemble(frame, parts)
    else:
        fmt = time_format(config) or times.infer_format(frame[timestamp], config.dataset.timestamp_unit)
        parsed = times.parse(frame[timestamp], fmt, config.dataset.timezone)
    frame = frame.assign(**{timestamp: parsed})
    if window is None:
        return frame.reset_index(drop=True)
    return frame.loc[(parsed >= window[0]) & (parsed < window[1])].reset_index(drop=True)
