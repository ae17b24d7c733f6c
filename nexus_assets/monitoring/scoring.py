"""`batch_predictions`: the champion scores every validated row of a partition (or of a range of them), and the
scores are stored. Each partition is one task (`score_partition`) that reads its features, scores them in chunks and
writes the scores to Parquet and the app database itself: in the run's process, or on a Dask worker (`Compute`)."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from nexus_assets.lib.background import Background
from nexus_assets.lib.links import asset_link, version_links
from nexus_assets.lib.metadata import table
from nexus_assets.lib.ranges import partition_keys, written
from nexus_core import registry, shadow_predictions
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, fitted_spec, model_inputs
from nexus_core.inference import predict
from nexus_resources.app_db import AppDatabase
from nexus_resources.compute import Compute
from nexus_resources.frame_io import ParquetIOManager, PartitionFiles
from nexus_resources.mlflow import MlflowResource

COLUMNS = ["prediction", "probability", "id", "model_version"]


@dataclass(frozen=True)
class ScoringJob:
    """What a task needs to score a partition, as plain data that travels to a worker."""

    name: str
    version: str
    challenger: str | None
    id_column: str
    chunk_rows: int
    files: PartitionFiles
    features: tuple[str, ...]
    predictions: tuple[str, ...]
    app_db_url: str
    spec: FeatureSpec  # the columns the champion reads, read from its feature step once per run


@dataclass(frozen=True)
class Scored:
    """A task's result: how many rows it scored, how many of each prediction, how many in shadow."""

    rows: int
    counts: pd.DataFrame
    shadowed: int


def build_batch_predictions(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    name, id_column = config.model.registered_name, config.dataset.id_column or "row"

    @dg.asset(
        key=config.asset("batch_predictions"),
        deps=[config.asset("features")],
        group_name="monitoring",
        kinds={"scikit-learn", "sql", "parquet"},
        code_version="4",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="parquet_io_manager",
    )
    def batch_predictions(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        app_db: AppDatabase,
        parquet_io_manager: dg.ResourceParam[ParquetIOManager],
        compute: Compute,
    ) -> dg.MaterializeResult:
        """The champion's prediction for every validated row of each partition, also stored in the app database."""
        client, keys, files = mlflow.client(), partition_keys(context), parquet_io_manager.files()
        with mlflow.reporting_failures("load the champion"):
            named = registry.aliases(client, name)
            version = named.get(registry.CHAMPION)
            if version is None:  # nothing is served yet; drift_report still compares the data with training
                context.log.warning(f"{name} has no champion yet: nothing scored")
                stored = {key: files.write(config.asset("batch_predictions"), key, _empty()) for key in keys}
                return written(context, {key: {"model_version": "", "stored": stored[key]} for key in keys})
            pipeline = registry.load_pipeline(f"models:/{name}/{version}")
            challenger = named.get(registry.CHALLENGER) if config.monitoring.shadow_batch else None
            shadowing = (
                registry.load_pipeline(f"models:/{name}/{challenger}") if challenger not in (None, version) else None
            )
        job = ScoringJob(
            name=name,
            version=version,
            challenger=challenger if shadowing is not None else None,
            id_column=id_column,
            chunk_rows=config.monitoring.score_chunk_rows,
            files=files,
            features=tuple(config.asset("features")),
            predictions=tuple(config.asset("batch_predictions")),
            app_db_url=app_db.url,
            spec=model_spec(pipeline, name, version),
        )
        with mlflow.reporting_failures(f"find where {name} v{version} came from"):
            lineage = version_links(config, context.instance, mlflow, version)
        metadata = {}
        tasks = compute.each(config, score_partition, keys, job, (pipeline, shadowing), what="scoring partition")
        for done, (key, scored) in enumerate(tasks, start=1):
            app_db.record_health(name, key, version, predictions=scored.rows)
            shadow = f"; challenger v{challenger} scored them in shadow" if scored.shadowed else ""
            context.log.info(f"{key}: scored {scored.rows:,} rows ({done} of {len(keys)} partitions){shadow}")
            metadata[key] = {
                "dagster/row_count": dg.MetadataValue.int(scored.rows),
                "model_version": version,
                **lineage,
                **({"features_read": asset_link(config, "features", partition=key)} if key else {}),
                "predictions": table(scored.counts),
                "stored": files.display(job.predictions, key),
            }
        return written(context, {key: metadata[key] for key in keys})

    return batch_predictions


def score_partition(key: str | None, job: ScoringJob, models: tuple[Pipeline, Pipeline | None]) -> Scored:
    """Scores one partition's features in chunks and stores the scores, replacing any earlier ones: in Parquet,
    and in the app database (on a thread, while the next chunk is scored), with the challenger's in shadow."""
    pipeline, shadowing = models
    features = job.files.read(job.features, key)
    spec, step, app_db = job.spec, job.chunk_rows, AppDatabase(url=job.app_db_url)
    row_ids = ids(features, job.id_column).to_numpy()  # in their source type here and in Parquet; text in the DB
    parts, shadows = [], []
    with Background(lambda chunks: app_db.replace_predictions(job.name, key, job.version, chunks)) as store:
        for start in range(0, len(features), step):
            chunk = model_inputs(features.iloc[start : start + step], spec)
            scored = score(pipeline, chunk).assign(id=row_ids[start : start + step])
            store.put(scored)
            parts.append(scored)
            if shadowing is not None:
                shadows.append(score(shadowing, chunk))
    rows = (pd.concat(parts, ignore_index=True) if parts else _empty()).assign(model_version=job.version)[COLUMNS]
    if shadows:
        theirs = pd.concat(shadows, ignore_index=True)
        shadow_predictions.write(app_db.engine(), shadow_rows(job.name, rows, job.version, theirs, job.challenger))
    job.files.write(job.predictions, key, rows)
    counts = rows["prediction"].value_counts().rename_axis("prediction").rename("rows").reset_index()
    return Scored(len(rows), counts.astype({"prediction": str}), sum(map(len, shadows)))


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS)


def shadow_rows(
    name: str, ours: pd.DataFrame, version: str, theirs: pd.DataFrame, challenger: str
) -> list[dict[str, object]]:
    """The champion's and the challenger's scores of the same rows, as shadow predictions."""
    frame = pd.DataFrame(
        {
            "registered_model": name,
            "record_id": ours["id"].astype(str).to_numpy(),
            "source": "batch",
            "served_at": dt.datetime.now(dt.UTC),
            "champion_version": version,
            "champion_prediction": ours["prediction"].to_numpy(),
            "champion_probability": ours["probability"].to_numpy(),
            "challenger_version": challenger,
            "challenger_prediction": theirs["prediction"].to_numpy(),
            "challenger_probability": theirs["probability"].to_numpy(),
        }
    )
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def ids(frame: pd.DataFrame, id_column: str) -> pd.Series:
    """The rows' ids, or their position in the day when the dataset has no id column."""
    return frame[id_column] if id_column in frame else pd.Series(frame.index, index=frame.index)


def score(pipeline, inputs: pd.DataFrame) -> pd.DataFrame:
    labels, probabilities = predict(pipeline, inputs)
    if probabilities is None:
        return pd.DataFrame({"prediction": _text(labels), "probability": np.nan})
    # binary: the positive class's probability, so AUC can be computed later from stored rows
    score = probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities.max(axis=1)
    return pd.DataFrame({"prediction": _text(labels), "probability": score})


def _text(labels: np.ndarray) -> np.ndarray:
    """Labels as strings, converting each distinct label once (a tenth of the cost of `astype(str)` per row)."""
    codes, distinct = pd.factorize(labels, use_na_sentinel=False)
    return distinct.astype(str).astype(object)[codes]


def model_spec(pipeline: Pipeline, name: str, version: str) -> FeatureSpec:
    """The columns a logged model reads, by the roles its own feature step encodes them by."""
    spec = fitted_spec(pipeline)
    if spec is None:
        raise dg.Failure(f"version {version} of {name} was not trained by NexusML (no feature step to read)")
    return spec
