"""Data and prediction drift with Evidently, on deterministic samples so cost does not grow with the day's size."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nexus_assets.lib.reference import sample
from nexus_core.features import FeatureSpec

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry

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


def measure(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, drift_share: float) -> Drift:
    """Evidently's DataDriftPreset over the numeric and categorical features (and the prediction score, when both
    frames have it); ids, text and lists are left out: most of their values are new in every partition."""
    # Imported here: Evidently takes ~3 s to import, paid by every Dagster step process and CLI call otherwise.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [*spec.numbers, *([PREDICTION] if PREDICTION in reference and PREDICTION in current else [])]
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
