"""The data contract: each column's role and type, fixed by the first load that passes its checks.

Roles come from the config where it declares them, from the stored contract otherwise, and are inferred only for
columns neither knows. A column is numeric when nearly all its values read as numbers, so one stray word in a
numeric column breaks the contract (and its partition's check) instead of turning the column categorical.
"""

from __future__ import annotations

from itertools import zip_longest

import pandas as pd

from nexus_assets.data.sources import Locate
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, number_parse, read_numbers

Columns = dict[str, dict[str, str]]  # name -> {"role": ..., "type": ..., "parse": how text reads as numbers}
_NUMERIC_SHARE = 0.95  # of non-null values that must read as numbers for an undeclared column to be numeric


def propose(config: NexusConfig, frame: pd.DataFrame, stored: Columns | None) -> Columns:
    """The contract for `frame`'s dataset: declared roles first, then the stored contract's, then inferred ones."""
    known = _declared(config)
    stored = stored or {}
    names = list(dict.fromkeys([*stored, *frame.columns, *known]))
    columns = {}
    for name in names:
        role = known.get(name) or stored.get(name, {}).get("role")
        if role is None:
            if name not in frame.columns:
                continue
            role = _free_role(config, frame[name])
        kind = stored.get(name, {}).get("type") if stored.get(name, {}).get("role") == role else None
        if kind is None and role == "target" and config.dataset.task == "regression":
            kind = "number"
        if kind is None:
            kind = _type(role, frame[name]) if name in frame.columns else _ROLE_TYPES.get(role, "string")
        columns[name] = {"role": role, "type": kind}
        parse = stored.get(name, {}).get("parse") if stored.get(name, {}).get("type") == kind else None
        if parse is None and kind in ("number", "integer") and name in frame.columns:
            parse = number_parse(frame[name])
        if parse:
            columns[name]["parse"] = parse
    return columns


def feature_spec_of(columns: Columns) -> FeatureSpec:
    return FeatureSpec(
        tuple(n for n, c in columns.items() if c["role"] == "numeric"),
        tuple(n for n, c in columns.items() if c["role"] == "categorical"),
    )


def rows_named(rows: list[int], locate: Locate | None) -> list[str]:
    """`row 17`, or `row 17 (events.csv line 19)` where the source's files say where it comes from."""
    places = locate(rows) if locate else []
    return [f"row {row} ({place})" if place else f"row {row}" for row, place in zip_longest(rows, places)]


def violations(columns: Columns, frame: pd.DataFrame, locate: Locate | None = None) -> list[str]:
    """Each column of the contract that is missing, or holds values of another type, with rows and values."""
    problems = []
    for name, column in columns.items():
        if column["role"] in ("unused", "dropped"):
            continue
        if name not in frame.columns:
            problems.append(f"column {name!r} ({column['role']}) is missing")
            continue
        bad = _not_of_type(frame[name], column["type"])
        if bad.any():
            rows = frame.index[bad][:5].tolist()
            named = rows_named(rows, locate)
            examples = ", ".join(f"{where}: {frame.at[r, name]!r}" for r, where in zip(rows, named, strict=True))
            problems.append(
                f"column {name!r} should hold {column['type']} values ({column['role']}) but "
                f"{int(bad.sum())} row(s) do not, e.g. {examples}"
            )
    return problems


def _declared(config: NexusConfig) -> dict[str, str]:
    dataset, roles = config.dataset, {}
    for name in dataset.columns.drop:
        roles[name] = "dropped"
    for name in dataset.columns.numeric or []:
        roles[name] = "numeric"
    for name in dataset.columns.categorical or []:
        roles[name] = "categorical"
    for role, name in (("timestamp", dataset.timestamp), ("id", dataset.id_column), ("target", dataset.target)):
        if name:
            roles[name] = role
    return roles


def _free_role(config: NexusConfig, values: pd.Series) -> str:
    declared = config.dataset.columns
    if declared.numeric is not None and declared.categorical is not None:
        return "unused"  # both lists given: only they feed the model
    if declared.numeric is not None:
        return "categorical"
    return "numeric" if _reads_as_numbers(values) else "categorical"


_ROLE_TYPES = {"numeric": "number", "categorical": "string", "timestamp": "datetime"}


def _type(role: str, values: pd.Series) -> str:
    if role in _ROLE_TYPES:
        return _ROLE_TYPES[role]
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    numbers = read_numbers(present)
    if len(present) and numbers.notna().all():
        return "integer" if (numbers % 1 == 0).all() else "number"
    return "string"


def _reads_as_numbers(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return True
    present = values.dropna()
    return bool(len(present)) and read_numbers(present).notna().mean() >= _NUMERIC_SHARE


def _not_of_type(values: pd.Series, kind: str) -> pd.Series:
    """True where a present value cannot be read as `kind`."""
    present = values.notna()
    if kind in ("number", "integer") and not pd.api.types.is_bool_dtype(values):
        numbers = read_numbers(values)
        bad = present & numbers.isna()
        if kind == "integer":
            bad |= present & numbers.notna() & (numbers % 1 != 0)
        return bad
    if kind == "datetime":
        return present & pd.to_datetime(values, errors="coerce").isna()
    return pd.Series(False, index=values.index)
