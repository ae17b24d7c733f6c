"""A new dataset's config written from its data: `nexus new` and `dg scaffold defs nexus_defs.NexusDataset`.

The roles are inferred the way the data contract infers them at the first load, and written as comments beside
the keys that change them, so the file is a starting point to read and edit, not a black box.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pandas as pd

from nexus_assets.data import contract
from nexus_assets.data.times import infer_format
from nexus_core.config import ConfigError, load_config

SAMPLE_ROWS = 50_000  # rows read to infer roles: enough for rare values, quick on a large file
CLASSES_AT_MOST = 20  # a target with more distinct numbers than this is a regression


def new_dataset(name: str, data: str | Path, target: str, path: Path) -> Path:
    """Write the config of dataset `name` at `path`, from the CSV or Parquet file `data` and its `target` column;
    the written file is loaded once, so a wrong inference fails here, naming the key."""
    data = Path(data).resolve()
    if path.exists():
        raise ConfigError(f"{path}: already exists; choose another name or edit it")
    frame = _sample(data)
    if target not in frame:
        raise ConfigError(f"--target {target!r} is not a column of {data}; its columns: {', '.join(frame.columns)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_render(name, data, target, frame, path.parent))
    load_config(path)
    return path


def _sample(data: Path) -> pd.DataFrame:
    if not data.is_file():
        raise ConfigError(f"--data {data}: no such file")
    if data.suffix.lower() == ".parquet":
        return pd.read_parquet(data).head(SAMPLE_ROWS)
    return pd.read_csv(data, nrows=SAMPLE_ROWS, encoding="utf-8-sig")


def _render(name: str, data: Path, target: str, frame: pd.DataFrame, folder: Path) -> str:
    task, why = _task(frame[target])
    timestamp = next((column for column in frame if column != target and _is_time(frame[column])), None)
    roles: dict[str, list[str]] = {}
    id_column = None
    for column in frame.columns.drop([target, *([timestamp] if timestamp else [])]):
        role, _ = contract.infer_role(column, frame[column], None)
        if role == "unused" and id_column is None:
            id_column = column
            continue
        roles.setdefault(role, []).append(column)
    lines = [
        f"# NexusML dataset {name!r}, written by `nexus new` from {data.name} ({len(frame):,} rows read).",
        "# The roles below were inferred from the values; edit this file, then run the main job",
        '# (README: "Your own data" lists every key).',
        "dataset:",
        f"  name: {name}",
        "  source:",
        "    kind: file",
        f"    path: {os.path.relpath(data, folder)}",
        f"  target: {target}",
        f"  task: {task}  # {why}",
    ]
    if timestamp:
        lines.append(f"  timestamp: {timestamp}  # drives the partitions and the time split")
        lines.append("  # partitions: daily  # inferred from the timestamps' cadence when left out")
    else:
        lines.append("  # timestamp: COLUMN  # none found: one table, split at random; with one, partitions by time")
    if id_column:
        lines.append(f"  id_column: {id_column}  # distinct in every row: how predictions and late labels join")
    lines.append("  # Roles as inferred (declare a column under columns to change its role):")
    for role, columns in sorted(roles.items()):
        lines += textwrap.wrap(", ".join(columns), 116, initial_indent=f"  #   {role}: ", subsequent_indent="  #     ")
    lines += [
        "  columns:",
        "    drop: []  # columns the model must not see (leaks of the target, free-form notes)",
        "model:",
        f"  registered_name: {name}-model",
        "  # selection_metric: the task's default (roc_auc, accuracy or rmse)",
        "",
    ]
    return "\n".join(lines)


def _task(target: pd.Series) -> tuple[str, str]:
    values = target.dropna()
    distinct = values.nunique()
    if distinct == 2:
        return "binary_classification", f"2 distinct values: {', '.join(map(str, sorted(values.unique(), key=str)))}"
    if pd.api.types.is_numeric_dtype(values) and distinct > CLASSES_AT_MOST:
        return "regression", f"numbers, {distinct} distinct values"
    return "multiclass_classification", f"{distinct} distinct values"


def _is_time(values: pd.Series) -> bool:
    """Whether a column holds times: stored as times, or text that reads as dates in one format."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if pd.api.types.is_numeric_dtype(values) or values.dropna().empty:
        return False
    try:
        return infer_format(values).format not in (None, "mixed")
    except ValueError:
        return False
