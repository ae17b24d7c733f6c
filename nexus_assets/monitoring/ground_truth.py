"""`ground_truth`: the labels of a partition's rows as they become known, after the predictions. Each partition is
one task (`partition_labels`) that reads only the ids and targets of its features and writes its labels itself: in
the run's process, or on a Dask worker (`Compute`)."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from nexus_assets.data.sources import labels_known
from nexus_assets.lib.ranges import partition_keys, written
from nexus_assets.monitoring.scoring import ids
from nexus_core.config import NexusConfig
from nexus_resources.compute import Compute
from nexus_resources.frame_io import ParquetIOManager, PartitionFiles, PickleIOManager
from nexus_resources.instance import data_present


class LabelsConfig(dg.Config):
    as_of: str | None = None  # ISO date the labels are read as of; default: the data's present (`data_present`)


@dataclass(frozen=True)
class _Labelling:
    """What a task needs to read a partition's known labels, as plain data that travels to a worker."""

    config: NexusConfig
    as_of: dt.date
    features: PartitionFiles
    labels: PartitionFiles


@dataclass(frozen=True)
class Labelled:
    """A task's result: how many of the partition's rows have a label so far, of how many."""

    known: int
    rows: int


def build_ground_truth(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    raw_data, nexus_config = config.asset("raw_data"), config  # the asset's own run config is named `config`

    @dg.asset(
        key=config.asset("ground_truth"),
        deps=[config.asset("features")],
        group_name="monitoring",
        kinds={"pandas"},
        code_version="2",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def ground_truth(
        context: dg.AssetExecutionContext,
        config: LabelsConfig,
        compute: Compute,
        io_manager: dg.ResourceParam[PickleIOManager],
        parquet_io_manager: dg.ResourceParam[ParquetIOManager],
    ) -> dg.MaterializeResult:
        """The labels of a partition's rows that are known so far (they arrive after the predictions)."""
        as_of = (
            dt.date.fromisoformat(config.as_of)
            if config.as_of
            else data_present(context.instance, partitions, raw_data)
        )
        job = _Labelling(nexus_config, as_of, parquet_io_manager.files(), io_manager.files())
        metadata, keys = {}, partition_keys(context)
        for key, labelled in compute.each(nexus_config, partition_labels, keys, job, what="labels of partition"):
            pending = labelled.rows - labelled.known
            note = f"{labelled.known} of {labelled.rows} labels known as of {as_of}, {pending} awaiting label"
            context.log.info(f"{key}: {note}")
            metadata[key] = {
                "dagster/row_count": dg.MetadataValue.int(labelled.known),
                "labels": note,
                "pending_labels": dg.MetadataValue.int(pending),  # late_labels_sensor reads it
                "as_of": dg.MetadataValue.text(as_of.isoformat()),
            }
        return written(context, {key: metadata[key] for key in keys})

    return ground_truth


def partition_labels(key: str | None, job: _Labelling) -> Labelled:
    """Reads a partition's ids and targets, stores the labels known as of `job.as_of` (replacing earlier ones)."""
    config, dataset = job.config, job.config.dataset
    id_column = dataset.id_column or "row"
    columns = [column for column in (dataset.id_column, dataset.target) if column]
    frame = job.features.read(config.asset("features"), key, columns=columns)
    known = labels_known(config, key, frame.assign(**{id_column: ids(frame, id_column)}), job.as_of)
    labels = known[[id_column, dataset.target]].dropna().rename(columns={dataset.target: "label"})
    job.labels.write(config.asset("ground_truth"), key, labels)
    return Labelled(len(labels), len(frame))
