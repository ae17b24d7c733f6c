"""`features` and `training_dataset`: validated model-ready rows, and the window models learn from.

Each partition of `features` is one task (`feature_partition`, in the run's process or on a Dask worker) that reads
its raw rows and writes its features itself."""

from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from nexus_assets.data import contract
from nexus_assets.features.split import TrainingDataset, split_by_partition, split_by_row
from nexus_assets.lib.metadata import frame_metadata, table
from nexus_assets.lib.ranges import partition_keys, written
from nexus_assets.partitions import partitions_def
from nexus_core import names
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, model_inputs, read_numbers
from nexus_resources.app_db import AppDatabase
from nexus_resources.compute import Compute
from nexus_resources.frame_io import ParquetIOManager, PartitionFiles, PickleIOManager


def build_feature_assets(config: NexusConfig) -> list[dg.AssetsDefinition]:
    dataset = config.dataset

    @dg.asset(
        key=config.asset("features"),
        deps=[config.asset("raw_data")],
        group_name="data",
        kinds={"pandas", "scikit-learn", "parquet"},
        code_version="5",
        partitions_def=partitions_def(config),
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="parquet_io_manager",
        owners=dataset.owners,
    )
    def features(
        context: dg.AssetExecutionContext,
        app_db: AppDatabase,
        io_manager: dg.ResourceParam[PickleIOManager],
        parquet_io_manager: dg.ResourceParam[ParquetIOManager],
        compute: Compute,
    ) -> dg.MaterializeResult:
        """Validated rows of each partition in the model's canonical types: ids, timestamp, features and target."""
        stored = app_db.contract(dataset.name)
        job = _Featuring(config, stored["columns"] if stored else None, io_manager.files(), parquet_io_manager.files())
        keys = partition_keys(context)
        done = dict(compute.each(config, feature_partition, keys, job, what="features of partition"))
        return written(context, {key: done[key].metadata for key in keys})

    @dg.asset(
        group_name="training",
        kinds={"pandas"},
        code_version="3",
        key=config.asset("training_dataset"),
        ins={"features": dg.AssetIn(key=config.asset("features"), metadata={"allow_missing_partitions": True})},
    )
    def training_dataset(
        context: dg.AssetExecutionContext, features: Any, app_db: AppDatabase
    ) -> dg.MaterializeResult[TrainingDataset]:
        """The latest training window of labelled rows, split by time into train, validation and a frozen holdout."""
        stored = app_db.contract(dataset.name)
        if stored is None:
            raise dg.Failure(f"no data contract for {dataset.name} yet; materialize raw_data and features first")
        spec = contract.feature_spec_of(stored["columns"])
        # Partitioned features arrive as {partition: frame}; an unpartitioned dataset as one frame.
        if isinstance(features, dict):
            if not features:
                raise dg.Failure("no partition of features is materialized yet; materialize raw_data and features")
            labels = labelling(config, pd.concat(features.values(), ignore_index=True))
            partitions = {key: labels.apply(frame) for key, frame in features.items()}
            data = split_by_partition(partitions, config, spec, since=context.run.tags.get(names.REGIME_START))
        else:
            labels = labelling(config, features)
            data = split_by_row(labels.apply(features), config, spec)
        unseen = _unseen_levels(data)
        for column, share in unseen.items():
            if share > UNSEEN_WARNING:
                context.log.warning(
                    f"{share:.0%} of the holdout's {column!r} values never occur in training: the model cannot learn "
                    f"from them (names reused, ids that keep coming); if {column!r} is no feature, add it to "
                    "dataset.columns.drop"
                )
        metadata = _split_metadata(data) | labels.metadata()
        if unseen:
            metadata["unseen_in_holdout"] = dg.MetadataValue.json({c: round(s, 4) for c, s in unseen.items()})
        return dg.MaterializeResult(value=data, metadata=metadata)

    return [features, training_dataset]


@dataclass(frozen=True)
class _Featuring:
    """What a task needs to make a partition's features, as plain data that travels to a worker."""

    config: NexusConfig
    contract: dict | None  # the stored data contract's columns
    raw: PartitionFiles
    features: PartitionFiles


@dataclass(frozen=True)
class Featured:
    """A task's metadata, wrapped: Dask cannot size a dict of Dagster metadata values and warns for each."""

    metadata: dict[str, dg.MetadataValue]


def feature_partition(key: str | None, job: _Featuring) -> Featured:
    """Reads a partition's raw rows, stores its features (replacing earlier ones) and returns their metadata."""
    config, dataset = job.config, job.config.dataset
    raw = job.raw.read(config.asset("raw_data"), key)
    columns = contract.propose(config, raw, job.contract)
    spec = contract.feature_spec_of(columns)
    target = raw[dataset.target]
    if dataset.task == "regression":
        target = read_numbers(target)
    inputs = model_inputs(raw, spec).drop(columns=list(spec.time))  # the timestamp is kept as it is
    keep = [c for c in (dataset.id_column, dataset.timestamp) if c]
    frame = pd.concat([raw[keep], inputs, target], axis=1)
    described = {n: c for n, c in columns.items() if n in frame.columns}
    return Featured(
        {
            # each column described by its role in the data contract (and its configured description)
            **frame_metadata(frame, described, dataset.descriptions),
            "features": dg.MetadataValue.md(_features_by_role(spec)),
            "stored": job.features.write(config.asset("features"), key, frame),
        }
    )


@dataclass(frozen=True)
class Labelling:
    """Which rows a model can learn from: those with a label, with classes too rare to learn grouped or reported."""

    target: str
    awaiting: int
    rare: dict[str, int]
    group: bool

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        labelled = frame[frame[self.target].notna()]
        if not (self.group and self.rare):
            return labelled
        target = labelled[self.target].astype(str)
        return labelled.assign(**{self.target: target.where(~target.isin(self.rare.keys()), names.OTHER_CLASS)})

    def metadata(self) -> dict[str, dg.MetadataValue]:
        rare = ", ".join(f"{name} ({rows})" for name, rows in self.rare.items()) or "none"
        how = f"trained as {names.OTHER_CLASS!r}" if self.group else "kept; set dataset.rare_classes.group to pool them"
        return {
            "awaiting_label": dg.MetadataValue.int(self.awaiting),
            "rare_classes": dg.MetadataValue.text(f"{rare}" + (f" ({how})" if self.rare else "")),
        }


def labelling(config: NexusConfig, frame: pd.DataFrame) -> Labelling:
    """How `frame`'s labels are used: rows awaiting one are left out, rare classes counted (and pooled if asked)."""
    dataset = config.dataset
    target = frame[dataset.target]
    rare: dict[str, int] = {}
    if dataset.task != "regression":
        counts = target.dropna().astype(str).value_counts()
        rare = counts[counts < dataset.rare_classes.min_rows].sort_values().to_dict()
    return Labelling(dataset.target, int(target.isna().sum()), rare, dataset.rare_classes.group)


UNSEEN_WARNING = 0.5  # share of holdout rows whose level of a category never occurs in training


def _unseen_levels(data: TrainingDataset) -> dict[str, float]:
    """For each category of many levels, the share of holdout rows whose value the training rows never had."""
    return {
        column: float((~data.holdout[column].isin(set(data.train[column].dropna()))).mean())
        for column in data.spec.high_cardinality
        if len(data.holdout)
    }


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
        "split": table(rows.rename_axis("part").reset_index().convert_dtypes()),
        "window_hash": dg.MetadataValue.text(data.manifest["window_hash"]),
        "holdout_hash": dg.MetadataValue.text(data.manifest["holdout"]["content_hash"]),
    }


def _features_by_role(spec: FeatureSpec) -> str:
    roles = {
        "numeric": spec.numeric,
        "numeric, mostly empty (with a missing indicator)": spec.mostly_empty,
        "categorical (one-hot)": spec.categorical,
        "high cardinality (target-encoded)": spec.high_cardinality,
        "text (TF-IDF)": spec.text,
        "list (a column per frequent token)": tuple(column for column, _ in spec.lists),
        "time (hour, weekday, month where they vary)": spec.time,
    }
    rows = "\n".join(f"| {role} | {', '.join(columns)} |" for role, columns in roles.items() if columns)
    return f"| role | columns |\n|---|---|\n{rows}"
