"""The reference sample: training inputs logged with each candidate's MLflow run, what drift is measured against."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

REFERENCE_ARTIFACT = "reference.parquet"
REFERENCE_ROWS = 5_000


def sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """At most `rows` rows, the same ones every time for the same frame."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


def log_reference(learned_from: pd.DataFrame, seed: int) -> None:
    """Inside an active MLflow run: the reference for later drift checks, a sample of the newest half of the rows
    the model learned from (oldest first). The newest, so that once a retrain has learned a new regime the drift
    alarm measured against it clears, instead of comparing each day with the old regime for a whole window."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_ARTIFACT
        sample(learned_from.iloc[len(learned_from) // 2 :], REFERENCE_ROWS, seed).to_parquet(path)
        mlflow.log_artifact(str(path))


def load_reference(client: MlflowClient, name: str, version: str) -> pd.DataFrame:
    """The reference sample logged with the run that made `version`; empty when that run logged none."""
    run_id = client.get_model_version(name, version).run_id
    if REFERENCE_ARTIFACT not in {artifact.path for artifact in client.list_artifacts(run_id)}:
        return pd.DataFrame()
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp)
        return pd.read_parquet(path)
