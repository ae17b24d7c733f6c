"""`raw_data`: the configured source, one partition at a time, behind blocking checks and the data contract."""

import dagster as dg
import pandas as pd

from nexus_assets.data import contract
from nexus_assets.data.checks import Inputs, blocking_failures, check_raw_data, raw_data_check_specs
from nexus_assets.data.sources import Coverage, SourceReadError, coverage, locator, read_partition
from nexus_assets.lib.metadata import frame_metadata
from nexus_assets.partitions import partition_of, partitioning
from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase


def build_raw_data(config: NexusConfig) -> dg.AssetsDefinition:
    source_kind = {"synthetic": "python", "file": "file", "sql": "sql"}[config.dataset.source.kind]
    partitions = partitioning(config)

    @dg.asset(
        name="raw_data",
        group_name="data",
        kinds={"pandas", source_kind},
        code_version="2",
        partitions_def=partitions.definition(),
        check_specs=raw_data_check_specs("raw_data", partitions.definition()),
        metadata={"partitions": partitions.note},
        owners=config.dataset.owners,
    )
    def raw_data(context: dg.AssetExecutionContext, app_db: AppDatabase):
        """Rows of the configured source for one partition, stored as read so failed checks can be inspected."""
        read_error, part = None, partition_of(context)
        try:
            frame = read_partition(config, part)
            outside = coverage(config, partitions.start, partitions.end) if partitions.start else Coverage()
        except SourceReadError as exc:
            frame, outside, read_error = pd.DataFrame(), Coverage(), str(exc)
        stored = app_db.contract(config.dataset.name)
        columns = contract.propose(config, frame, stored["columns"] if stored else None)
        version = stored["version"] if stored else None
        located = locator(config, part) if not read_error else None
        inputs = Inputs(frame, columns, version, outside, read_error, sparse=partitions.sparse, locate=located)
        checks = check_raw_data(inputs, config, "raw_data")
        failed = blocking_failures(checks)
        for check in failed:
            context.log.error(f"check {check.check_name} failed: {check.description}")
        metadata = {**frame_metadata(frame, columns, config.dataset.descriptions), "source": config.dataset.source.kind}
        if not failed and len(frame):
            # The first load that passes fixes the contract; later ones keep it (a new version only when the
            # config declares different roles).
            version = app_db.record_contract(
                config.dataset.name, columns, context.partition_key if context.has_partition_key else None
            )
            metadata["contract_version"] = dg.MetadataValue.int(version)
        return dg.MaterializeResult(value=frame, metadata=metadata, check_results=checks)

    return raw_data
