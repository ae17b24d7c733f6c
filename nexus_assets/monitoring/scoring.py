"""`batch_predictions`: the champion scores every validated row of a partition (or of a range of them, loaded
once), and the scores are stored."""

import datetime as dt
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from nexus_assets.lib.background import Background
from nexus_assets.lib.keys import inputs
from nexus_assets.lib.links import asset_link, version_links
from nexus_assets.lib.metadata import table
from nexus_assets.lib.ranges import by_partition, output
from nexus_core import registry, shadow_predictions
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, fitted_spec, model_inputs
from nexus_core.inference import predict
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource


def build_batch_predictions(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    name, id_column = config.model.registered_name, config.dataset.id_column or "row"

    @dg.asset(
        key=config.asset("batch_predictions"),
        ins=inputs(config, "features"),
        group_name="monitoring",
        kinds={"scikit-learn", "sql", "parquet"},
        code_version="3",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="parquet_io_manager",
    )
    def batch_predictions(
        context: dg.AssetExecutionContext, features: Any, mlflow: MlflowResource, app_db: AppDatabase
    ) -> dg.Output:
        """The champion's prediction for every validated row of each partition, also stored in the app database."""
        client = mlflow.client()
        with mlflow.reporting_failures("load the champion"):
            named = registry.aliases(client, name)
            version = named.get(registry.CHAMPION)
            if version is None:  # nothing is served yet; drift_report still compares the data with training
                context.log.warning(f"{name} has no champion yet: nothing scored")
                empty = pd.DataFrame(columns=["prediction", "probability", "id", "model_version"])
                keys = by_partition(context, features)
                return output(context, {key: empty for key in keys}, {key: {"model_version": ""} for key in keys})
            pipeline = registry.load_pipeline(f"models:/{name}/{version}")
            challenger = named.get(registry.CHALLENGER) if config.monitoring.shadow_batch else None
            shadowing = (
                registry.load_pipeline(f"models:/{name}/{challenger}") if challenger not in (None, version) else None
            )
        spec, step = model_spec(pipeline, name, version), config.monitoring.score_chunk_rows

        def predictions(key: str | None, features: pd.DataFrame) -> pd.DataFrame:
            row_ids = ids(features, id_column).to_numpy()  # in their source type here and in Parquet; text in the DB
            parts, shadows = [], []
            # Rows are written to the app database on a thread while the next chunk is scored.
            with Background(lambda chunks: app_db.replace_predictions(name, key, version, chunks)) as store:
                for start in range(0, len(features), step):
                    chunk = model_inputs(features.iloc[start : start + step], spec)
                    scored = score(pipeline, chunk).assign(id=row_ids[start : start + step])
                    store.put(scored)
                    parts.append(scored)
                    if shadowing is not None:
                        shadows.append(score(shadowing, chunk))
                    if len(features) > step:
                        context.log.info(f"{key}: scored {start + len(chunk):,} of {len(features):,} rows")
            empty = pd.DataFrame(columns=["prediction", "probability", "id"])
            rows = (pd.concat(parts, ignore_index=True) if parts else empty).assign(model_version=version)
            if shadows:
                theirs = pd.concat(shadows, ignore_index=True)
                shadow_predictions.write(app_db.engine(), shadow_rows(name, rows, version, theirs, challenger))
                context.log.info(f"{key}: challenger v{challenger} scored the {len(theirs):,} rows in shadow")
            app_db.record_health(name, key, version, predictions=len(rows))
            return rows

        frames = by_partition(context, features)
        with mlflow.reporting_failures(f"find where {name} v{version} came from"):
            lineage = version_links(config, context.instance, mlflow, version)
        values, metadata = {}, {}
        for key, frame in frames.items():
            values[key] = rows = predictions(key, frame)
            counts = rows["prediction"].value_counts().rename_axis("prediction").rename("rows").reset_index()
            metadata[key] = {
                "dagster/row_count": dg.MetadataValue.int(len(rows)),
                "model_version": version,
                **lineage,
                **({"features_read": asset_link(config, "features", partition=key)} if key else {}),
                "predictions": table(counts.astype({"prediction": str})),
            }
        return output(context, values, metadata)

    return batch_predictions


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
