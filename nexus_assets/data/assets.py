"""`raw_data`: the configured source, one daily partition at a time, behind blocking checks."""

import dagster as dg

from nexus_assets.data.checks import check_raw_data, raw_data_check_specs
from nexus_assets.data.sources import read_partition
from nexus_assets.lib.metadata import frame_metadata
from nexus_assets.partitions import daily_partitions, partition_day
from nexus_resources.config import NexusConfig


def build_raw_data(config: NexusConfig) -> dg.AssetsDefinition:
    source_kind = {"synthetic": "python", "file": "file", "sql": "sql"}[config.dataset.source.kind]

    @dg.asset(
        name="raw_data",
        group_name="data",
        kinds={"pandas", source_kind},
        code_version="1",
        partitions_def=daily_partitions(config),
        check_specs=raw_data_check_specs("raw_data"),
    )
    def raw_data(context: dg.AssetExecutionContext):
        """Rows of the configured source for one day, stored as read so failed checks can be inspected."""
        frame = read_partition(config, partition_day(context))
        checks = check_raw_data(frame, config, "raw_data")
        for failed in (c for c in checks if not c.passed):
            context.log.error(f"check {failed.check_name} failed: {failed.description}")
        return dg.MaterializeResult(
            value=frame,
            metadata={**frame_metadata(frame), "source": config.dataset.source.kind},
            check_results=checks,
        )

    return raw_data
