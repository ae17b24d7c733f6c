"""Checks on `raw_data`: each says which column or rows failed and why. All block what is downstream, except
`in_range`, which counts the source's rows that belong to no partition (they cannot block any one of them)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from nexus_assets.data.contract import MOSTLY_EMPTY, Columns, feature_spec_of, rows_named, violations
from nexus_assets.data.sources import Coverage, Locate
from nexus_core.config import NexusConfig
from nexus_core.features import read_numbers

RAW_DATA_CHECKS = {
    "readable": "The source could be read for this partition.",
    "non_empty": "The partition has at least one row (a warning for irregular times or checks.allow_empty_partitions).",
    "schema": "Every column of the data contract is there and holds values of the contract's type.",
    "target_present": "The target column is there and at least checks.min_labelled_share of rows have a value; rows "
    "awaiting a label are kept, scored and monitored, and left out of training.",
    "target_valid": "The target's values fit the task (classes, a single pair for binary, finite numbers).",
    "null_rates": "No feature has far more missing values than usual for it (the data contract's), or than "
    "checks.max_null_rate / checks.null_rate allow where set.",
    "value_ranges": "Configured columns stay within their limits.",
    "unique_ids": "No id appears twice.",
    "in_range": "Every row of the source falls in some partition (a warning: such rows are in none to block).",
}
_NOT_BLOCKING = {"in_range"}


@dataclass
class Inputs:
    """What the checks look at for one partition."""

    frame: pd.DataFrame
    columns: Columns  # the data contract the partition must keep
    contract_version: int | None
    coverage: Coverage
    read_error: str | None = None
    sparse: bool = False  # the partitions are irregular periods: an empty one is normal
    locate: Locate | None = None  # where rows come from in the source files, for the messages


def raw_data_check_specs(asset_key: list[str], partitions: dg.PartitionsDefinition | None) -> list[dg.AssetCheckSpec]:
    """The checks, partitioned like the asset: each partition has its own result in the UI."""
    return [
        dg.AssetCheckSpec(
            name, asset=asset_key, description=text, blocking=name not in _NOT_BLOCKING, partitions_def=partitions
        )
        for name, text in RAW_DATA_CHECKS.items()
    ]


def check_raw_data(inputs: Inputs, config: NexusConfig, asset_key: list[str]) -> list[dg.AssetCheckResult]:
    """Run every raw-data check on one partition."""
    frame = inputs.frame
    empty_ok = config.checks.allow_empty_partitions or inputs.sparse
    skip = inputs.read_error or (frame.empty and empty_ok)
    results = {
        "readable": ([inputs.read_error] if inputs.read_error else [], {}),
        "non_empty": _non_empty(frame, inputs.read_error, inputs.sparse),
        "in_range": _in_range(inputs.coverage),
    }
    if not skip:
        results |= {
            "schema": _schema(inputs),
            "target_present": _target_present(frame, config, inputs.locate),
            "target_valid": _target_valid(frame, config, inputs.columns),
            "null_rates": _null_rates(frame, config, inputs.columns),
            "value_ranges": _value_ranges(frame, config, inputs.locate),
            "unique_ids": _unique_ids(frame, config),
        }
    why_skipped = "not checked: the source could not be read" if inputs.read_error else "no rows to check"
    checks = []
    for name in RAW_DATA_CHECKS:
        problems, metadata = results.get(name, ([], {}))
        description = "; ".join(problems) or ("ok" if name in results else why_skipped)
        checks.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=name,
                passed=not problems,
                description=description,
                metadata=metadata,
                severity=_severity(name, empty_ok),
            )
        )
    return checks


def blocking_failures(results: list[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    return [r for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]


def _severity(name: str, empty_ok: bool) -> dg.AssetCheckSeverity:
    warn = name in _NOT_BLOCKING or (name == "non_empty" and empty_ok)
    return dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR


Outcome = tuple[list[str], dict]


def _non_empty(frame: pd.DataFrame, read_error: str | None, sparse: bool) -> Outcome:
    if len(frame) or read_error:
        return [], {"rows": len(frame)}
    if sparse:
        return ["the period has no rows, which is normal for this data's irregular times"], {"rows": 0}
    return [
        "the partition has no rows; if empty periods are normal for this data, set checks.allow_empty_partitions: "
        "true, or choose longer dataset.partitions (weekly, monthly)"
    ], {"rows": 0}


def _in_range(coverage: Coverage) -> Outcome:
    if not coverage.outside:
        return [], {"rows_outside": 0}
    parts = [
        f"{count} {what}"
        for count, what in (
            (coverage.unparseable, "with no readable timestamp"),
            (coverage.before, "before the first partition"),
            (coverage.after, "after the last partition"),
        )
        if count
    ]
    return [
        f"{coverage.outside} row(s) of the source are in no partition: {', '.join(parts)}; e.g. "
        + "; ".join(coverage.examples[:5])
        + ". Fix the timestamps, or widen dataset.start_date / end_date"
    ], {"rows_outside": coverage.outside}


def _schema(inputs: Inputs) -> Outcome:
    described = dg.MetadataValue.json(inputs.columns)
    return violations(inputs.columns, inputs.frame, inputs.locate), {
        "contract": described,
        "contract_version": inputs.contract_version,
    }


def _target_present(frame: pd.DataFrame, config: NexusConfig, locate: Locate | None) -> Outcome:
    name = config.dataset.target
    if name not in frame.columns:
        return [f"target column {name!r} is missing"], {}
    if frame.empty:
        return [], {"awaiting_label": 0}
    missing = frame[name].isna()
    awaiting, share, minimum = int(missing.sum()), 1 - float(missing.mean()), config.checks.min_labelled_share
    metadata = {"awaiting_label": awaiting, "labelled_share": round(share, 4)}
    if share >= minimum:
        return [], metadata
    return [
        f"only {share:.1%} of rows have a target {name!r} value, fewer than checks.min_labelled_share={minimum:g}: "
        f"{awaiting} of {len(frame)} row(s) await a label, e.g. {_rows(frame, missing, locate)}; label them at the "
        "source or lower checks.min_labelled_share"
    ], metadata


def _target_valid(frame: pd.DataFrame, config: NexusConfig, columns: Columns) -> Outcome:
    dataset = config.dataset
    if dataset.target not in frame.columns:
        return [f"target column {dataset.target!r} is missing"], {}
    present = frame[dataset.target].dropna()
    problems = []
    if dataset.task == "regression":
        numbers = read_numbers(present)
        bad = numbers.isna() | ~np.isfinite(numbers.fillna(0))
        if bad.any():
            problems.append(
                f"target {dataset.target!r} must be a finite number; {int(bad.sum())} row(s) are not, "
                f"e.g. {_examples(present[bad])}"
            )
    else:
        labels = label_text(present)
        if dataset.classes is not None:
            unknown = ~labels.isin([str(c) for c in dataset.classes])
            if unknown.any():
                problems.append(
                    f"target {dataset.target!r} has {int(unknown.sum())} value(s) outside classes "
                    f"{dataset.classes}, e.g. {_examples(present[unknown])}"
                )
        if dataset.task == "binary_classification" and labels.nunique() > 2:
            problems.append(
                f"target {dataset.target!r} has {labels.nunique()} distinct values "
                f"({', '.join(sorted(labels.unique())[:10])}); binary needs at most 2: "
                "set dataset.task: multiclass_classification"
            )
    counts = present.value_counts().head(20)
    return problems, {"values": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()})}


def label_text(values: pd.Series) -> pd.Series:
    """Labels as text the way people write them: 1.0 in a column that nulls made float reads as 1."""
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        return values.astype("Int64").astype(str)
    return values.astype(str)


def _null_rates(frame: pd.DataFrame, config: NexusConfig, columns: Columns) -> Outcome:
    """Each feature's share of missing values against the limit the config sets, or else against the share usual for
    it (the contract's), with the tolerance and what the partition's size leaves to chance."""
    checks = config.checks
    features = [c for c in feature_spec_of(columns).columns if c in frame.columns]
    rates = frame[features].isna().mean() if len(frame) else pd.Series()
    problems = []
    for column, rate in rates.items():
        what = "is entirely null" if rate == 1 else f"is {rate:.1%} null"
        if column in checks.null_rate or checks.max_null_rate is not None:
            limit = checks.null_rate.get(column, checks.max_null_rate)
            key = f"checks.null_rate.{column}" if column in checks.null_rate else "checks.max_null_rate"
            if rate > limit:
                problems.append(f"column {column!r} {what} (limit {limit:.0%}, {key})")
            continue
        usual = columns[column].get("usual")
        if usual is None or usual["null_share"] > MOSTLY_EMPTY:  # a column mostly empty is normal being empty
            continue
        share = max(usual["null_share"], 0.01)
        chance = 3 * np.sqrt(share * (1 - share) * (1 / max(usual["rows"], 1) + 1 / len(frame)))
        if rate > usual["null_share"] + max(checks.null_rate_tolerance, chance):
            problems.append(
                f"column {column!r} {what}, usually {usual['null_share']:.1%} (the data contract's; more than "
                f"checks.null_rate_tolerance={checks.null_rate_tolerance:g} above it): fix the source, or set "
                f"checks.null_rate.{column} if this is its new normal"
            )
    return problems, {"null_rates": dg.MetadataValue.json({c: round(float(r), 4) for c, r in rates.items()})}


def _value_ranges(frame: pd.DataFrame, config: NexusConfig, locate: Locate | None) -> Outcome:
    problems = []
    for column, limits in config.checks.ranges.items():
        if column not in frame.columns:
            problems.append(f"column {column!r} has a range limit but is missing")
            continue
        values = read_numbers(frame[column])
        low = values < limits.min if limits.min is not None else False
        high = values > limits.max if limits.max is not None else False
        outside = low | high
        if np.any(outside):
            problems.append(
                f"column {column!r} has {int(outside.sum())} row(s) outside [{limits.min}, {limits.max}], "
                f"e.g. {_rows(frame, outside, locate)} with {_examples(frame[column][outside])}"
            )
    return problems, {}


def _unique_ids(frame: pd.DataFrame, config: NexusConfig) -> Outcome:
    id_column = config.dataset.id_column
    if id_column is None:
        return [], {"note": "no id_column configured"}
    if id_column not in frame.columns:
        return [f"id column {id_column!r} is missing"], {}
    duplicated = frame[id_column].duplicated(keep=False)
    if not duplicated.any():
        return [], {}
    ids = frame.loc[duplicated, id_column]
    return [
        f"{ids.nunique()} id(s) in {id_column!r} appear more than once ({int(duplicated.sum())} rows), "
        f"e.g. {_examples(ids.drop_duplicates())}"
    ], {}


def _rows(frame: pd.DataFrame, mask: pd.Series, locate: Locate | None, n: int = 5) -> str:
    return ", ".join(rows_named(frame.index[mask][:n].tolist(), locate))


def _examples(values: pd.Series, n: int = 5) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values.head(n)]
