"""Daily partitions, when the dataset has a timestamp column."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from nexus_resources.config import NexusConfig


def daily_partitions(config: NexusConfig) -> dg.DailyPartitionsDefinition | None:
    dataset = config.dataset
    if not config.partitioned:
        return None
    return dg.DailyPartitionsDefinition(
        start_date=dataset.start_date.isoformat(),
        end_date=dataset.end_date.isoformat() if dataset.end_date else None,
    )


def partition_day(context: dg.AssetExecutionContext) -> dt.date | None:
    """The day a partitioned run is for, or None for an unpartitioned dataset."""
    if not context.has_partition_key:
        return None
    return dt.date.fromisoformat(context.partition_key)
