"""Data and prediction drift with Evidently, on deterministic samples so cost does not grow with the day's size."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from nexus_assets.features.transform import FeatureSpec

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry

REFERENCE_ARTIFACT = "reference.parquet"
REFERENCE_ROWS = 5_000
CURRENT_ROWS = 20_000
PREDICTION = "prediction_score"


@dataclass
class Drift:
    share: float
    columns: pd.DataFrame  # column, method, score, threshold, drifted
    html: str

    @property
    def drifted(self) -> list[str]:
        return self.columns.loc[self.columns["drifted"], "column"].tolist()


def sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """At most `rows` rows, the same ones every time for the same frame."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


def log_reference(inputs: pd.DataFrame, seed: int) -> None:
    """Inside an active MLflow run: a sample of the training inputs, the reference for later drift checks."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_ARTIFACT
        sample(inputs, REFERENCE_ROWS, seed).to_parquet(path)
        mlflow.log_artifact(str(path))


def load_reference(client: MlflowClient, name: str, version: str) -> pd.DataFrame:
    """The reference sample logged with the run that made `version`; empty when that run logged none."""
    run_id = client.get_model_version(name, version).run_id
    if REFERENCE_ARTIFACT not in {artifact.path for artifact in client.list_artifacts(run_id)}:
        return pd.DataFrame()
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp)
        return pd.read_parquet(path)


def measure(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, drift_share: float) -> Drift:
    """Evidently's DataDriftPreset over the features (and the prediction score, when both frames have it)."""
    # Imported here: Evidently takes ~3 s to import, paid by every Dagster step process and CLI call otherwise.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [*spec.numeric, *([PREDICTION] if PREDICTION in reference and PREDICTION in current else [])]
    columns = [*numeric, *spec.categorical]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=list(spec.categorical))
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
        current_data=Dataset.from_pandas(sample(current[columns], CURRENT_ROWS), data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    share, rows = 0.0, []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith("ValueDrift"):
            score, threshold = float(metric["value"]), float(config["threshold"])
            # p-value tests drift below the threshold; distances drift at or above it
            drifted = score < threshold if "p_value" in config["method"] else score >= threshold
            rows.append(
                {
                    "column": config["column"],
                    "method": config["method"],
                    "score": score,
                    "threshold": threshold,
                    "drifted": drifted,
                }
            )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        snapshot.save_html(str(path))
        html = path.read_text()
    return Drift(share, pd.DataFrame(rows, columns=["column", "method", "score", "threshold", "drifted"]), html)
