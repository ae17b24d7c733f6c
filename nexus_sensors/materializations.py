"""What the instance remembers of an asset's materializations, as the sensors read it."""

import dagster as dg


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> dict:
    """The metadata values of the latest materialization of `asset` (of `partition`); empty when there is none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    if not records:
        return {}
    return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}
