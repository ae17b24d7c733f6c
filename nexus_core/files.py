"""The files of a file source: which ones a path or glob names, their format, and their header."""

from __future__ import annotations

import csv
import glob
import os
from pathlib import Path

import pyarrow.parquet as pq


def source_files(pattern: str) -> list[str]:
    """The files a path or glob names, in a stable order."""
    return sorted(glob.glob(pattern))


def file_keys(pattern: str) -> list[str]:
    """The partition key of each file a glob names: its path below the glob's fixed folder, in name order."""
    base = _base(pattern)
    return [os.path.relpath(path, base) for path in source_files(pattern)]


def file_of(pattern: str, key: str) -> str:
    """The file of a partition key from `file_keys`."""
    return os.path.join(_base(pattern), key)


def _base(pattern: str) -> str:
    parts = pattern.split(os.sep)
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts) - 1)
    return os.sep.join(parts[:fixed])


def file_format(path: str, declared: str | None) -> str:
    kind = declared or Path(path).suffix.lstrip(".").lower()
    if kind == "pq":
        return "parquet"
    if kind not in ("csv", "parquet"):
        raise ValueError(f"{path}: cannot tell CSV from Parquet by its name; set dataset.source.format")
    return kind


def header(path: str, declared: str | None = None, encoding: str = "utf-8") -> list[str]:
    """The column names of a CSV or Parquet file; a ValueError names the file and what is wrong with it."""
    if file_format(path, declared) == "parquet":
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
    with open(path, "rb") as handle:
        first = handle.readline()
    if not first.strip():
        raise ValueError(f"{path}: the file is empty (no header line)")
    try:
        line = first.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: the header is not {encoding} text (byte {exc.start}: {first[exc.start : exc.start + 1]!r}); "
            "set dataset.source.encoding (e.g. latin-1)"
        ) from None

    return next(csv.reader([line.lstrip("\ufeff").rstrip("\r\n")]))
