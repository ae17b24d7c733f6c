"""`features` and `training_dataset`: validated model-ready rows, and the window models learn from.

Each partition of `features` is one task (`feature_partition`, in the run's process or on a Dask worker) that reads
its raw rows and writes its features itself."""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from nexus_assets.data import contract
from nexus_assets.features.split import History, TrainingDataset, labelling, split_by_partition, split_by_row
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
        code_version="4",
        key=config.asset("training_dataset"),
        deps=[config.asset("features")],
    )
    def training_dataset(
        context: dg.AssetExecutionContext, app_db: AppDatabase, parquet_io_manager: dg.ResourceParam[ParquetIOManager]
    ) -> dg.MaterializeResult[TrainingDataset]:
        """The latest training window of labelled rows, split by time into train, validation and a frozen holdout."""
        stored = app_db.contract(dataset.name)
        if stored is None:
            raise dg.Failure(f"no data contract for {dataset.name} yet; materialize raw_data and features first")
        spec = contract.feature_spec_of(stored["columns"])
        files, key = parquet_io_manager.files(), config.asset("features")
        if partitions_def(config) is None:
            features = files.read(key, None)
            labels = labelling(config, [features[dataset.target]])
            data = split_by_row(labels.apply(features), config, spec)
        else:
            keys = sorted(context.instance.get_materialized_partitions(dg.AssetKey(key)))
            if not keys:
                raise dg.Failure("no partition of features is materialized yet; materialize raw_data and features")
            rows: dict[str, int] = {}

            def targets() -> Iterator[pd.Series]:  # one column of a partition at a time, however long the history
                for partition in keys:
                    target = files.read(key, partition, columns=[dataset.target])[dataset.target]
                    rows[partition] = int(target.notna().sum())
                    yield target

            labels = labelling(config, targets())
            history = History(rows, lambda partition: labels.apply(files.read(key, partition)))
            data = split_by_partition(history, config, spec, since=context.run.tags.get(names.REGIME_START))
        data.labels = labels
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
