"""`features` and `training_dataset`: validated model-ready rows, and the window models learn from."""

from typing import Any

import dagster as dg
import pandas as pd

from nexus_assets.data import contract
from nexus_assets.features.split import TrainingDataset, split_by_partition, split_by_row
from nexus_assets.lib.metadata import frame_metadata
from nexus_assets.partitions import partitions_def
from nexus_core import names
from nexus_core.config import NexusConfig
from nexus_core.features import feature_spec, model_inputs
from nexus_resources.app_db import AppDatabase


def build_feature_assets(config: NexusConfig) -> list[dg.AssetsDefinition]:
    dataset = config.dataset
    keep = [c for c in (dataset.id_column, dataset.timestamp) if c]

    @dg.asset(
        group_name="data",
        kinds={"pandas", "scikit-learn", "parquet"},
        code_version="3",
        partitions_def=partitions_def(config),
        io_manager_key="parquet_io_manager",
        owners=dataset.owners,
    )
    def features(raw_data: pd.DataFrame, app_db: AppDatabase) -> dg.MaterializeResult[pd.DataFrame]:
        """Validated rows of one partition in the model's canonical types: ids, timestamp, features and target."""
        stored = app_db.contract(dataset.name)
        spec = contract.feature_spec_of(contract.propose(config, raw_data, stored["columns"] if stored else None))
        frame = pd.concat([raw_data[keep], model_inputs(raw_data, spec), raw_data[[dataset.target]]], axis=1)
        return dg.MaterializeResult(
            value=frame,
            metadata={
                **frame_metadata(frame, descriptions=dataset.descriptions),
                "numeric_features": ", ".join(spec.numeric),
                "categorical_features": ", ".join(spec.categorical),
            },
        )

    @dg.asset(
        group_name="training",
        kinds={"pandas"},
        code_version="1",
        ins={"features": dg.AssetIn(metadata={"allow_missing_partitions": True})},
    )
    def training_dataset(context: dg.AssetExecutionContext, features: Any) -> dg.MaterializeResult[TrainingDataset]:
        """The latest training window, split by time into train, validation and a frozen holdout."""
        # Partitioned features arrive as {partition: frame}; an unpartitioned dataset as one frame.
        if isinstance(features, dict):
            if not features:
                raise dg.Failure("no partition of features is materialized yet; materialize raw_data and features")
            spec = feature_spec(config, next(iter(features.values())))
            data = split_by_partition(features, config, spec, since=context.run.tags.get(names.REGIME_START))
        else:
            data = split_by_row(features, config, feature_spec(config, features))
        return dg.MaterializeResult(value=data, metadata=_split_metadata(data))

    return [features, training_dataset]


def _split_metadata(data: TrainingDataset) -> dict[str, dg.MetadataValue]:
    rows = pd.DataFrame(
        {
            name: {k: v for k, v in part.items() if k != "content_hash"}
            for name, part in data.manifest.items()
            if isinstance(part, dict)
        }
    ).T
    window = {"window": dg.MetadataValue.text(data.manifest["window"])} if "window" in data.manifest else {}
    return window | {
        "dagster/row_count": dg.MetadataValue.int(sum(len(data.part(p)) for p in ("train", "validation", "holdout"))),
        "split": dg.MetadataValue.md(rows.to_markdown()),
        "window_hash": dg.MetadataValue.text(data.manifest["window_hash"]),
        "holdout_hash": dg.MetadataValue.text(data.manifest["holdout"]["content_hash"]),
    }
