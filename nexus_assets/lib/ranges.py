"""A step over a range of partitions (a backfill as one run, `BackfillPolicy.single_run()`), with each partition's
own materialization metadata and check results in the UI, as if it had run alone.

Dagster records an `AssetCheckResult` of a range step without a partition, so the results are reported as one
`AssetCheckEvaluation` per partition, after the output, each naming the materialization it judged. A failed
blocking check fails the step once every partition is stored and judged, as a single partition's would; what
is downstream of the partitions that passed runs in a run of its own (`nexus_cli.runs.ingest`, or
`monitoring_automation` under the daemon).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

# Not exported by dagster 1.13, but what an evaluation needs to be "current" for its partition's materialization.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

Key = str | None  # a partition key, or None for an unpartitioned asset


def partition_keys(context: dg.AssetExecutionContext) -> list[Key]:
    """The partitions this step materializes: one, a range, or [None] for an unpartitioned asset."""
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    return [None]


def by_partition(context: dg.AssetExecutionContext, value: Any) -> dict[Key, Any]:
    """An input as `{partition: value}`: a range of partitions arrives so already, one partition as its value."""
    return value if isinstance(value, dict) else {partition_keys(context)[0]: value}


def split_by_time(
    frame: pd.DataFrame, column: str, spans: Sequence[tuple[pd.Timestamp, pd.Timestamp]]
) -> list[pd.DataFrame]:
    """`frame`'s rows in each of the consecutive `spans`, in their order in `frame`: one pass, not one per span."""
    starts = np.array([start for start, _ in spans], dtype="datetime64[ns]")
    times = frame[column].to_numpy(dtype="datetime64[ns]")
    index = np.searchsorted(starts, times, side="right") - 1
    inside = (index >= 0) & (times < np.datetime64(spans[-1][1]))
    groups = pd.Series(np.arange(len(frame)))[inside].groupby(index[inside]).indices if len(frame) else {}
    return [frame.iloc[groups[i]].reset_index(drop=True) if i in groups else frame.iloc[:0] for i in range(len(spans))]


def output(
    context: dg.AssetExecutionContext, values: Mapping[Key, Any], metadata: Mapping[Key, Mapping[str, Any]]
) -> dg.Output:
    """The step's output: one value, or `{partition: value}` for a range; each partition's metadata its own."""
    for key, entries in metadata.items():
        context.add_asset_metadata(dict(entries), partition_key=key)
    return dg.Output(dict(values) if len(values) > 1 else next(iter(values.values())))


def written(context: dg.AssetExecutionContext, metadata: Mapping[Key, Mapping[str, Any]]) -> dg.MaterializeResult:
    """The result of a step whose tasks stored its partitions' values themselves: each partition's metadata its
    own, and no value for the IO manager to write again."""
    for key, entries in metadata.items():
        context.add_asset_metadata(dict(entries), partition_key=key)
    return dg.MaterializeResult()


def checked(
    context: dg.AssetExecutionContext, results: Mapping[Key, Sequence[dg.AssetCheckResult]]
) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
    """Each partition's check results, judging the materialization this step stored for it (yield them after
    the output)."""
    specs = {spec.name: (output, spec) for output, spec in context.assets_def.check_specs_by_output_name.items()}
    for output, _ in specs.values():
        yield dg.Output(None, output_name=output)
    partitions = [key for key in results if key is not None]
    latest = context.instance.fetch_materializations(  # the index's ids, which the check statuses compare
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=partitions or None),
        limit=max(len(results), 1),
    ).records
    target = {}
    for record in latest:  # newest first: this step's own
        target.setdefault(
            record.partition_key,
            AssetCheckEvaluationTargetMaterializationData(
                run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
            ),
        )
    for key, checks in results.items():
        for result in checks:
            spec = specs[result.check_name][1]
            yield dg.AssetCheckEvaluation(
                asset_key=context.asset_key,
                check_name=result.check_name,
                passed=result.passed,
                metadata=result.metadata,
                target_materialization_data=target.get(key),
                severity=result.severity,
                description=result.description,
                blocking=spec.blocking,
                partition=key if spec.partitions_def is not None else None,
            )
