"""`raw_data`: the configured source, a partition or a range of them per run, behind blocking checks and the data
contract."""

import dagster as dg
import pandas as pd

from nexus_assets.data import contract
from nexus_assets.data.checks import Inputs, blocking_failures, check_raw_data, raw_data_check_specs
from nexus_assets.data.sources import Coverage, SourceReadError, coverage, locator, read_partition
from nexus_assets.lib.metadata import frame_metadata
from nexus_assets.lib.ranges import checked, output, split_by_time
from nexus_assets.partitions import Partitioning, partitioning, parts_of
from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase


def build_raw_data(config: NexusConfig) -> dg.AssetsDefinition:
    source_kind = {"synthetic": "python", "file": "file", "sql": "sql"}[config.dataset.source.kind]
    partitions = partitioning(config)

    @dg.asset(
        key=config.asset("raw_data"),
        group_name="data",
        kinds={"pandas", source_kind},
        code_version="2",
        partitions_def=partitions.definition(),
        check_specs=raw_data_check_specs(config.asset("raw_data"), partitions.definition()),
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partitions": partitions.note},
        owners=config.dataset.owners,
    )
    def raw_data(context: dg.AssetExecutionContext, app_db: AppDatabase):
        """Rows of the configured source for each partition, stored as read so failed checks can be inspected."""
        parts = parts_of(context)
        frames, outside, read_error = _read(config, parts, partitions)
        stored = app_db.contract(config.dataset.name)
        values, metadata, results = {}, {}, {}
        for key, part in parts.items():
            frame = frames[key]
            columns = contract.propose(config, frame, stored["columns"] if stored else None)
            located = locator(config, part) if not read_error else None
            version = stored["version"] if stored else None
            inputs = Inputs(frame, columns, version, outside, read_error, sparse=partitions.sparse, locate=located)
            checks = check_raw_data(inputs, config, config.asset("raw_data"))
            failed = blocking_failures(checks)
            for check in failed:
                context.log.error(f"{key or 'raw_data'}: check {check.check_name} failed: {check.description}")
            metadata[key] = {
                **frame_metadata(frame, columns, config.dataset.descriptions),
                "source": config.dataset.source.kind,
            }
            if not failed and len(frame):
                # The first load that passes fixes the contract; later ones keep it (a new version only when the
                # config declares different roles).
                if stored is None or stored["columns"] != columns:
                    stored = {"columns": columns, "version": app_db.record_contract(config.dataset.name, columns, key)}
                metadata[key]["contract_version"] = dg.MetadataValue.int(stored["version"])
            values[key], results[key] = frame, checks
        yield output(context, values, metadata)
        yield from checked(context, results)

    return raw_data


def _read(
    config: NexusConfig, parts: dict, partitions: Partitioning
) -> tuple[dict[str | None, pd.DataFrame], Coverage, str | None]:
    """Each partition's rows, read in one pass over a range of time windows; the source's rows outside every
    partition; the error that made the source unreadable, if any (then every partition is empty)."""
    try:
        outside = coverage(config, partitions.start, partitions.end) if partitions.start else Coverage()
        windows = list(parts.values())
        timestamp = config.dataset.timestamp
        if len(windows) > 1 and isinstance(windows[0], tuple):
            whole = read_partition(config, (windows[0][0], windows[-1][1]))
            if timestamp in whole.columns:
                return dict(zip(parts, split_by_time(whole, timestamp, windows), strict=True)), outside, None
        return {key: read_partition(config, part) for key, part in parts.items()}, outside, None
    except SourceReadError as exc:
        return {key: pd.DataFrame() for key in parts}, Coverage(), str(exc)
