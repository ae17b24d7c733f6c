"""`batch_predictions`: the champion scores every validated row of a partition, and the scores are stored."""

import dagster as dg
import numpy as np
import pandas as pd

from nexus_assets.lib.background import Background
from nexus_core import registry
from nexus_core.config import NexusConfig
from nexus_core.features import feature_spec, model_inputs
from nexus_core.inference import predict
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource


def build_batch_predictions(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    name, id_column = config.model.registered_name, config.dataset.id_column or "row"

    @dg.asset(
        group_name="monitoring",
        kinds={"scikit-learn", "sql", "parquet"},
        code_version="2",
        partitions_def=partitions,
        io_manager_key="parquet_io_manager",
    )
    def batch_predictions(
        context: dg.AssetExecutionContext, features: pd.DataFrame, mlflow: MlflowResource, app_db: AppDatabase
    ) -> dg.MaterializeResult[pd.DataFrame]:
        """The champion's prediction for every validated row of a day, also stored in the app database."""
        client = mlflow.client()
        with mlflow.reporting_failures("load the champion"):
            version = registry.aliases(client, name).get(registry.CHAMPION)
            if version is None:
                raise dg.Failure(f"{name} has no champion yet; run the training chain before scoring")
            pipeline = registry.load_pipeline(f"models:/{name}/{version}")
        spec, step = feature_spec(config, features), config.monitoring.score_chunk_rows
        row_ids = ids(features, id_column).to_numpy()  # in their source type here and in Parquet; text in the app DB
        parts = []
        # Rows are written to the app database on a thread while the next chunk is scored.
        with Background(
            lambda chunks: app_db.replace_predictions(name, context.partition_key, version, chunks)
        ) as store:
            for start in range(0, len(features), step):
                chunk = model_inputs(features.iloc[start : start + step], spec)
                scored = score(pipeline, chunk).assign(id=row_ids[start : start + step])
                store.put(scored)
                parts.append(scored)
                if len(features) > step:
                    context.log.info(f"scored {start + len(chunk):,} of {len(features):,} rows")
        rows = (
            pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["prediction", "probability", "id"])
        )
        rows = rows.assign(model_version=version)
        app_db.record_health(name, context.partition_key, version, predictions=len(rows))
        counts = rows["prediction"].value_counts().rename_axis("prediction").rename("rows").to_frame()
        return dg.MaterializeResult(
            value=rows,
            metadata={
                "dagster/row_count": dg.MetadataValue.int(len(rows)),
                "model_version": version,
                "predictions": dg.MetadataValue.md(counts.to_markdown()),
            },
        )

    return batch_predictions


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
