"""What the Dagster instance remembers of an asset's materializations, as the sensors and assets read it."""

import datetime as dt

import dagster as dg


def latest_metadata(instance: dg.DagsterInstance, asset: list[str], partition: str | None = None) -> dict:
    """The metadata values of the latest materialization of `asset` (of `partition`); empty when there is none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    if not records:
        return {}
    return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}


def data_present(
    instance: dg.DagsterInstance, definition: dg.PartitionsDefinition | None, raw_data: list[str]
) -> dt.date:
    """Today as the data knows it: the end of the newest time partition ingested so far, so replayed history and
    production judge late labels alike; the calendar date when partitions are not periods of time."""
    if not isinstance(definition, dg.TimeWindowPartitionsDefinition):
        return dt.date.today()
    ingested = instance.get_materialized_partitions(dg.AssetKey(raw_data))
    newest = [key for key in definition.get_partition_keys() if key in ingested]
    return definition.time_window_for_partition_key(newest[-1]).end.date() if newest else dt.date.today()
