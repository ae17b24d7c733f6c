"""The data contract: each column's role and type, fixed by the first load that passes its checks.

Roles come from the config where it declares them, from the stored contract otherwise, and are inferred only for
columns neither knows. A column is numeric when nearly all its values read as numbers, so one stray word in a
numeric column breaks the contract (and its partition's check) instead of turning the column categorical.
"""

from __future__ import annotations

import re
from itertools import zip_longest

import pandas as pd

from nexus_assets.data.sources import Locate
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, number_parse, read_numbers

Columns = dict[str, dict]  # name -> {"role", "type", "why", "usual", and "parse" / "delimiter" where they apply}
_NUMERIC_SHARE = 0.95  # of non-null values that must read as numbers for an undeclared column to be numeric
FEATURE_ROLES = ("numeric", "categorical", "boolean", "high_cardinality", "text", "list")
MOSTLY_EMPTY = 0.5  # a feature this share empty in its first load gets a missing indicator beside its values
HIGH_CARDINALITY = 50  # distinct values in the first load above which a category is target-encoded
_KEY_SHARE, _KEY_MIN_ROWS = 0.95, 100  # a column this distinct over this many rows is a row key, not a feature
_TEXT_WORDS, _TEXT_DISTINCT, _TEXT_MIN_ROWS = 4, 0.3, 20
_LIST_DELIMITERS = ("|", ";", ",")
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "t", "f", "y", "n"}
# An id by its name: id, ID, user_id, id_str, userId, customerID (not "valid" or "paid").
_ID_NAME = re.compile(r"(?i:(?:^|_)id(?:$|_))|[a-z0-9](?:Id|ID)(?:$|[A-Z_])")


_REFINED = ("categorical", "high_cardinality")  # a declared category with many values is target-encoded


def propose(config: NexusConfig, frame: pd.DataFrame, stored: Columns | None) -> Columns:
    """The contract for `frame`'s dataset: declared roles first, then the stored contract's, then inferred ones."""
    known = _declared(config)
    stored = stored or {}
    names = list(dict.fromkeys([*stored, *frame.columns, *known]))
    columns = {}
    for name in names:
        before, role = stored.get(name), known.get(name)
        if before and (role is None or role == before["role"] or (role, before["role"]) == _REFINED):
            if "usual" not in before and before["role"] in FEATURE_ROLES and name in frame.columns:
                before = {**before, "usual": _usual(frame[name], before["role"])}  # a contract from before profiles
            columns[name] = before
        elif name in frame.columns:
            columns[name] = _column(config, name, frame[name], role)
        elif role is not None:
            columns[name] = {"role": role, "type": _ROLE_TYPES.get(role, "string")}
    return columns


def _column(config: NexusConfig, name: str, values: pd.Series, declared: str | None) -> dict:
    """A column's contract entry from its first values: role (declared or inferred) and why, type, usual profile."""
    if declared is None and _undeclared_unused(config):
        role, why = "unused", "not in dataset.columns.numeric or .categorical, which together list the features"
    elif declared == "time_part":
        role, why = "unused", "part of the timestamp (dataset.timestamp_parts), whose hour, weekday and month are used"
    elif declared == "timestamp":
        role, why = (
            "timestamp",
            "declared in dataset.timestamp: its hour, weekday and month feed the model where they vary",
        )
    elif declared in ("id", "target", "dropped"):
        role, why = declared, f"declared in dataset.{'columns.drop' if declared == 'dropped' else declared}"
    elif declared is None and config.dataset.columns.numeric is not None:
        role, why = infer_role(name, values, "categorical")  # dataset.columns.numeric lists all the numbers
    else:
        role, why = infer_role(name, values, declared)
    entry = {"role": role, "type": _type(role, values, config), "why": why}
    if role == "timestamp":
        entry["timezone"] = config.dataset.timezone
    if role == "list":
        entry["delimiter"] = _delimiter(values.dropna().astype(str)) or "|"
    if entry["type"] in ("number", "integer") and (parse := number_parse(values)):
        entry["parse"] = parse
    if role in FEATURE_ROLES:
        entry["usual"] = _usual(values, role)
        if entry["usual"]["null_share"] > MOSTLY_EMPTY:
            kept = "with a missing indicator" if role == "numeric" else "missing as a value of its own"
            entry["why"] += f"; mostly empty ({entry['usual']['null_share']:.0%} in its first load), {kept}"
    return entry


def infer_role(name: str, values: pd.Series, declared: str | None) -> tuple[str, str]:
    """The role of a feature column and why: declared, or by what its values look like."""
    present = values.dropna()
    rows, distinct = len(present), present.nunique()
    if declared == "categorical":
        if distinct > HIGH_CARDINALITY:
            return "high_cardinality", f"declared categorical, {distinct} distinct values: target-encoded"
        return "categorical", "declared in dataset.columns.categorical"
    if declared is not None:
        return declared, f"declared in dataset.columns.{declared}"
    if rows == 0:
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        return ("numeric" if numeric else "categorical"), "no values in its first load"
    if pd.api.types.is_bool_dtype(values) or (
        distinct <= 2 and not pd.api.types.is_numeric_dtype(values) and _is_boolean_words(present)
    ):
        return "boolean", "true/false values"
    keyed = rows >= _KEY_MIN_ROWS and distinct >= _KEY_SHARE * rows
    if _reads_as_numbers(values):
        integers = bool((read_numbers(present) % 1 == 0).all())
        if not (integers and _ID_NAME.search(name)):
            return "numeric", "numbers"
        if keyed or (rows >= _TEXT_MIN_ROWS and distinct == rows):
            return "unused", _key_note(distinct, rows, "an id by its name")
        # ids keep coming (new users, new items): target-encoded however few the first load holds
        return "high_cardinality", (
            f"an id by its name ({distinct} distinct integers in its first load): target-encoded, not used as a "
            "number; declare it in dataset.columns.numeric to use it as one"
        )
    text = present.astype(str)
    delimiter = _delimiter(text)
    if delimiter:
        return "list", f"lists of tokens separated by {delimiter!r}"
    words = text.str.count(r"\S+").mean()
    if rows >= _TEXT_MIN_ROWS and words >= _TEXT_WORDS and distinct >= _TEXT_DISTINCT * rows:
        return "text", f"free text: {words:.0f} words on average, {distinct / rows:.0%} of values distinct"
    if keyed:
        return "unused", _key_note(distinct, rows, "values")
    if distinct > HIGH_CARDINALITY:
        return "high_cardinality", f"{distinct} distinct values: target-encoded"
    return "categorical", f"{distinct} distinct values"


def _key_note(distinct: int, rows: int, what: str) -> str:
    return (
        f"{what}, distinct in {distinct} of {rows} rows: a row key, not a feature; declare it in "
        "dataset.columns.categorical (or .text) to use it"
    )


def _is_boolean_words(present: pd.Series) -> bool:
    return bool(present.astype(str).str.strip().str.lower().isin(_BOOLEAN_WORDS).all())


def _delimiter(text: pd.Series) -> str | None:
    """The delimiter of a list column: most values hold it, and the tokens it separates are few and short."""
    sample = text.head(5_000)
    for delimiter in _LIST_DELIMITERS:
        holding = sample.str.contains(delimiter, regex=False)
        if not len(sample) or holding.mean() < 0.2:
            continue
        tokens = sample.str.split(delimiter, regex=False).explode().str.strip()
        few = tokens.nunique() <= max(20, 0.5 * sample.nunique())
        if few and tokens.str.count(r"\S+").mean() <= 3 and tokens.str.len().mean() <= 30:
            return delimiter
    return None


def _usual(values: pd.Series, role: str) -> dict:
    """What a feature looks like in the load that fixed the contract, for the checks of later partitions."""
    usual: dict = {"rows": len(values), "null_share": round(float(values.isna().mean()), 4) if len(values) else 0.0}
    present = values.dropna()
    if role == "numeric" and len(present):
        numbers = read_numbers(present)
        usual |= {"min": float(numbers.min()), "max": float(numbers.max())}
    elif len(present):
        usual["distinct"] = int(present.nunique())
    return usual


def feature_spec_of(columns: Columns) -> FeatureSpec:
    """The model's features, by the role each has in the contract."""

    def named(*roles: str) -> tuple[str, ...]:
        return tuple(n for n, c in columns.items() if c["role"] in roles)

    empty = {n for n, c in columns.items() if c.get("usual", {}).get("null_share", 0) > MOSTLY_EMPTY}
    return FeatureSpec(
        numeric=tuple(n for n in named("numeric") if n not in empty),
        categorical=named("categorical", "boolean"),
        high_cardinality=named("high_cardinality"),
        text=named("text"),
        lists=tuple((n, columns[n].get("delimiter", "|")) for n in named("list")),
        mostly_empty=tuple(n for n in named("numeric") if n in empty),
        time=named("timestamp"),
        timezone=next((c.get("timezone", "UTC") for c in columns.values() if c["role"] == "timestamp"), "UTC"),
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
    if dataset.timestamp_parts:
        roles |= dict.fromkeys(dataset.timestamp_parts.columns, "time_part")
    declared = dataset.columns
    for role, names in (
        ("numeric", declared.numeric),
        ("categorical", declared.categorical),
        ("text", declared.text),
        ("list", declared.lists),
    ):
        roles |= dict.fromkeys(names or [], role)
    for role, name in (("timestamp", dataset.timestamp), ("id", dataset.id_column), ("target", dataset.target)):
        if name:
            roles[name] = role
    return roles


def _undeclared_unused(config: NexusConfig) -> bool:
    declared = config.dataset.columns
    return declared.numeric is not None and declared.categorical is not None  # both lists: only they feed the model


_ROLE_TYPES = {"numeric": "number", "categorical": "string", "timestamp": "datetime", "text": "string"} | {
    "list": "string"
}


def _type(role: str, values: pd.Series, config: NexusConfig) -> str:
    if role == "target" and config.dataset.task == "regression":
        return "number"
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
