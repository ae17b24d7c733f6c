"""Blocking checks on `raw_data`: each says which column or rows failed and why."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from nexus_assets.features.transform import FeatureSpec, feature_spec
from nexus_resources.config import NexusConfig

RAW_DATA_CHECKS = {
    "non_empty": "The partition has at least one row.",
    "schema": "Every expected column is there, numeric columns hold numbers.",
    "target_valid": "The target column has no missing and no invalid values.",
    "null_rates": "No feature column has more missing values than allowed.",
    "value_ranges": "Configured columns stay within their limits.",
    "unique_ids": "No id appears twice.",
}


def raw_data_check_specs(asset_key: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=asset_key, description=text, blocking=True)
        for name, text in RAW_DATA_CHECKS.items()
    ]


def check_raw_data(frame: pd.DataFrame, config: NexusConfig, asset_key: str) -> list[dg.AssetCheckResult]:
    """Run every raw-data check on one partition."""
    spec = feature_spec(config, frame)
    results = {
        "non_empty": _non_empty(frame),
        "schema": _schema(frame, config, spec),
        "target_valid": _target_valid(frame, config),
        "null_rates": _null_rates(frame, config, spec),
        "value_ranges": _value_ranges(frame, config),
        "unique_ids": _unique_ids(frame, config),
    }
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=name,
            passed=not problems,
            description="; ".join(problems) or "ok",
            metadata=metadata,
        )
        for name, (problems, metadata) in results.items()
    ]


Outcome = tuple[list[str], dict]


def _non_empty(frame: pd.DataFrame) -> Outcome:
    return ([] if len(frame) else ["the partition has no rows"]), {"rows": len(frame)}


def _schema(frame: pd.DataFrame, config: NexusConfig, spec: FeatureSpec) -> Outcome:
    dataset = config.dataset
    expected = [dataset.target, dataset.id_column, dataset.timestamp, *spec.columns]
    problems = [f"column {c!r} is missing" for c in dict.fromkeys(expected) if c and c not in frame.columns]
    for column in spec.numeric:
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            values = frame[column]
            bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
            problems.append(
                f"column {column!r} should be numeric but holds {values.dtype} values: "
                f"{int(bad.sum())} row(s) are not numbers, e.g. {_examples(values[bad])}"
            )
    return problems, {"columns": dg.MetadataValue.json({c: str(t) for c, t in frame.dtypes.items()})}


def _target_valid(frame: pd.DataFrame, config: NexusConfig) -> Outcome:
    dataset = config.dataset
    if dataset.target not in frame.columns:
        return [f"target column {dataset.target!r} is missing"], {}
    target = frame[dataset.target]
    problems = []
    missing = target.isna()
    if missing.any():
        problems.append(
            f"target {dataset.target!r} is missing in {int(missing.sum())} row(s), e.g. rows "
            f"{list(frame.index[missing][:5])}"
        )
    present = target[~missing]
    if dataset.task == "regression":
        numbers = pd.to_numeric(present, errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.fillna(0))
        if bad.any():
            problems.append(
                f"target {dataset.target!r} must be a finite number; {int(bad.sum())} row(s) are not, "
                f"e.g. {_examples(present[bad])}"
            )
    else:
        if dataset.classes is not None:
            unknown = ~present.astype(str).isin([str(c) for c in dataset.classes])
            if unknown.any():
                problems.append(
                    f"target {dataset.target!r} has {int(unknown.sum())} value(s) outside classes "
                    f"{dataset.classes}, e.g. {_examples(present[unknown])}"
                )
        if dataset.task == "binary_classification" and present.nunique() > 2:
            problems.append(
                f"target {dataset.target!r} has {present.nunique()} distinct values; binary needs at most 2"
            )
    counts = present.value_counts().head(20)
    return problems, {"values": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()})}


def _null_rates(frame: pd.DataFrame, config: NexusConfig, spec: FeatureSpec) -> Outcome:
    limits = config.checks
    rates = frame[[c for c in spec.columns if c in frame.columns]].isna().mean() if len(frame) else pd.Series()
    problems = []
    for column, rate in rates.items():
        limit = limits.null_rate.get(column, limits.max_null_rate)
        if rate > limit:
            what = "is entirely null" if rate == 1 else f"is {rate:.1%} null"
            problems.append(f"column {column!r} {what} (limit {limit:.0%})")
    return problems, {"null_rates": dg.MetadataValue.json({c: round(float(r), 4) for c, r in rates.items()})}


def _value_ranges(frame: pd.DataFrame, config: NexusConfig) -> Outcome:
    problems = []
    for column, limits in config.checks.ranges.items():
        if column not in frame.columns:
            problems.append(f"column {column!r} has a range limit but is missing")
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        low = values < limits.min if limits.min is not None else False
        high = values > limits.max if limits.max is not None else False
        outside = low | high
        if np.any(outside):
            problems.append(
                f"column {column!r} has {int(outside.sum())} row(s) outside [{limits.min}, {limits.max}], "
                f"e.g. rows {list(frame.index[outside][:5])} with {_examples(frame[column][outside])}"
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


def _examples(values: pd.Series, n: int = 5) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values.head(n)]
