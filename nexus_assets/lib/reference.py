"""The reference sample: training inputs logged with each candidate's MLflow run, what drift is measured against."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

REFERENCE_ARTIFACT = "reference.parquet"
REFERENCE_ROWS = 5_000
CALIBRATION_ARTIFACT = "drift_calibration.json"  # each column's drift scores of training partitions (drift.py)


def sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """At most `rows` rows, the same ones every time for the same frame."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


def reference_sample(learned_from: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The reference for later drift checks: a sample of the newest half of the rows the model learned from (oldest
    first). The newest, so that once a retrain has learned a new regime the drift alarm measured against it clears,
    instead of comparing each day with the old regime for a whole window."""
    return sample(learned_from.iloc[len(learned_from) // 2 :], REFERENCE_ROWS, seed)


def log_reference(reference: pd.DataFrame) -> None:
    """Inside an active MLflow run: the reference sample, as an artifact of the run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_ARTIFACT
        reference.to_parquet(path)
        mlflow.log_artifact(str(path))


def load_reference(client: MlflowClient, name: str, version: str) -> tuple[pd.DataFrame, dict | None]:
    """The reference sample logged with the run that made `version` (empty when that run logged none), and the
    drift calibration logged beside it (None for a run from before calibration)."""
    run_id = client.get_model_version(name, version).run_id
    logged = {artifact.path for artifact in client.list_artifacts(run_id)}
    if REFERENCE_ARTIFACT not in logged:
        return pd.DataFrame(), None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp)
        reference = pd.read_parquet(path)
    usual = (
        mlflow.artifacts.load_dict(f"runs:/{run_id}/{CALIBRATION_ARTIFACT}") if CALIBRATION_ARTIFACT in logged else None
    )
    return reference, usual
