"""LightGBM trained on the Dask cluster (`lightgbm.dask`) over the whole training history, when the history holds
more partitions than the window the run's own process reads (`training.max_rows`).

The feature transform is fitted in the run on the window's training rows, as for every family. Each worker reads
history partitions itself, labels and encodes them with that transform and keeps them in memory while LightGBM's
own distributed training runs across the workers. What comes back is an ordinary fitted pipeline: scored, logged,
registered and served like the others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMModel
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from nexus_assets.features.split import Labelling, TrainingDataset
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, build_preprocessor, model_inputs
from nexus_core.inference import TARGET_RANGE
from nexus_resources.frame_io import PartitionFiles

TARGET, WEIGHT = "__target__", "__weight__"


def beyond_window(data: TrainingDataset) -> bool:
    """Whether the history holds training partitions the window left out (more than `training.max_rows`)."""
    return len(data.history) > len(data.partition_rows.get("train", {}))


@dataclass(frozen=True)
class Encoding:
    """What a worker needs to turn a stored partition into model inputs, as plain data."""

    config: NexusConfig
    spec: FeatureSpec
    labels: Labelling
    files: PartitionFiles
    transform: ColumnTransformer
    anchors: pd.DataFrame | None
    change: tuple[str, float] | None


def encoded_partition(key: str, job: Encoding) -> pd.DataFrame:
    """A stored partition's labelled rows as the transform's columns, their target and their weight.

    LightGBM's classifier numbers the classes each worker sees by itself, so a worker whose rows lack a class would
    number them differently from the others: every partition carries one row of each class, weighing nothing."""
    frame = job.labels.apply(job.files.read(job.config.asset("features"), key))
    weight = job.change[1] if job.change and key >= job.change[0] else 1.0
    encoded = _encoded(job, frame, weight)
    return encoded if job.anchors is None else pd.concat([encoded, job.anchors], ignore_index=True)


def _encoded(job: Encoding, frame: pd.DataFrame, weight: float) -> pd.DataFrame:
    values = np.asarray(job.transform.transform(model_inputs(frame, job.spec)), dtype=np.float64)
    encoded = pd.DataFrame(values, columns=[f"f{i}" for i in range(values.shape[1])])
    return encoded.assign(**{TARGET: frame[job.config.dataset.target].to_numpy(), WEIGHT: np.full(len(frame), weight)})


def encoding(config: NexusConfig, data: TrainingDataset, files: PartitionFiles) -> Encoding:
    """The feature transform fitted on the window's training rows, and for a classifier one row of each class."""
    regression, spec = config.dataset.task == "regression", data.spec
    transform = build_preprocessor(spec, True, config.model.seed, regression)
    transform.fit(model_inputs(data.train, spec), data.train[config.dataset.target])
    job = Encoding(config, spec, data.labels, files, transform, None, data.change)
    if regression:
        return job
    classes = data.labels.classes
    first = _encoded(job, data.train.iloc[:1], 0.0)
    anchors = first.loc[np.zeros(len(classes), dtype=int)].reset_index(drop=True).assign(**{TARGET: classes})
    return dataclasses.replace(job, anchors=anchors)


def fit_on_cluster(
    config: NexusConfig, data: TrainingDataset, model: LGBMModel, files: PartitionFiles, client: Any
) -> tuple[Pipeline, int]:
    """`model`'s settings trained with `lightgbm.dask` on every partition of `data.history`, behind the feature
    transform; returns the fitted pipeline and the rows it learned from. `client` must be the default client (as
    `Compute.client` opens it): lightgbm.dask and Dask's own computes look for it there."""
    import dask
    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

    regression = config.dataset.task == "regression"
    job = encoding(config, data, files)
    example = _encoded(job, data.train.iloc[:1], 1.0)
    frames = client.persist(dd.from_map(encoded_partition, data.history, job=job, meta=example.iloc[:0]))
    try:
        columns = [column for column in example.columns if column not in (TARGET, WEIGHT)]
        X = frames[columns].to_dask_array(lengths=True)
        y, weights = frames[TARGET].to_dask_array(lengths=True), frames[WEIGHT].to_dask_array(lengths=True)
        kind = DaskLGBMRegressor if regression else DaskLGBMClassifier
        trained = kind(client=client, **model.get_params()).fit(X, y, sample_weight=weights).to_local()
        pipe = Pipeline([("features", job.transform), ("model", trained)])
        rows = int((weights > 0).sum().compute())
        if regression:
            setattr(pipe, TARGET_RANGE, [float(bound) for bound in dask.compute(y.min(), y.max())])
    finally:
        client.cancel(frames)
    return pipe, rows
