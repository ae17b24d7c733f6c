"""`ground_truth`: the labels of a partition's rows as they become known, after the predictions."""

import datetime as dt
from functools import partial
from typing import Any

import dagster as dg

from nexus_assets.data.sources import labels_known
from nexus_assets.lib.keys import inputs
from nexus_assets.lib.ranges import by_partition, output
from nexus_assets.monitoring.scoring import ids
from nexus_core.config import NexusConfig
from nexus_resources.instance import data_present


class LabelsConfig(dg.Config):
    as_of: str | None = None  # ISO date the labels are read as of; default: the data's present (`data_present`)


def build_ground_truth(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    read_labels = partial(labels_known, config)  # the asset's own run config is named `config`
    dataset, id_column = config.dataset, config.dataset.id_column or "row"
    raw_data = config.asset("raw_data")

    @dg.asset(
        key=config.asset("ground_truth"),
        ins=inputs(config, "features"),
        group_name="monitoring",
        kinds={"pandas"},
        code_version="1",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def ground_truth(context: dg.AssetExecutionContext, config: LabelsConfig, features: Any) -> dg.Output:
        """The labels of a partition's rows that are known so far (they arrive after the predictions)."""
        as_of = (
            dt.date.fromisoformat(config.as_of)
            if config.as_of
            else data_present(context.instance, partitions, raw_data)
        )
        frames = by_partition(context, features)
        values, metadata = {}, {}
        for key, frame in frames.items():
            known = read_labels(key, frame.assign(**{id_column: ids(frame, id_column)}), as_of)
            values[key] = labels = known[[id_column, dataset.target]].dropna().rename(columns={dataset.target: "label"})
            pending = len(frame) - len(labels)
            note = f"{len(labels)} of {len(frame)} labels known as of {as_of}, {pending} awaiting label"
            context.log.info(f"{key}: {note}")
            metadata[key] = {
                "dagster/row_count": dg.MetadataValue.int(len(labels)),
                "labels": note,
                "pending_labels": dg.MetadataValue.int(pending),  # late_labels_sensor reads it
                "as_of": dg.MetadataValue.text(as_of.isoformat()),
            }
        return output(context, values, metadata)

    return ground_truth
