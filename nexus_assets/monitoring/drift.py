"""Data and prediction drift with Evidently's tests and report, on deterministic samples so cost does not grow with
the day's size."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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

    @property
    def drifted(self) -> list[str]:
        return self.columns.loc[self.columns["drifted"], "column"].tolist()


def measure(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec) -> Drift:
    """Each numeric and categorical feature (and the prediction score, when both frames have it) tested for drift
    by the test Evidently's `DataDriftPreset` chooses for it, with its default threshold: the same scores and
    decisions as the report, in milliseconds instead of the report's second (it renders plots for every column).
    Ids, text and lists are left out: most of their values are new in every partition; so is a column empty on
    either side."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    current = sample(current, CURRENT_ROWS)
    rows = []
    for column, kind in _typed_columns(reference, current, spec):
        ours, theirs = (_known(frame[column], kind) for frame in (reference, current))
        if ours.empty or theirs.empty:
            continue
        column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
        test = get_stattest(ours, theirs, column_type, None)
        result = test(ours, theirs, column_type, None)
        rows.append([column, test.display_name, result.drift_score, result.actual_threshold, result.drifted])
    columns = pd.DataFrame(rows, columns=["column", "method", "score", "threshold", "drifted"])
    return Drift(float(columns["drifted"].mean()) if len(columns) else 0.0, columns)


def report_html(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, drift_share: float) -> str:
    """Evidently's `DataDriftPreset` report of the same columns, with its plots, as a standalone HTML page."""
    # Imported here: Evidently takes ~3 s to import, paid by every Dagster step process and CLI call otherwise.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    typed = _typed_columns(reference, current, spec)
    numeric = [column for column, kind in typed if kind == "numerical"]
    categorical = [column for column, kind in typed if kind == "categorical"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = [*numeric, *categorical]
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
        current_data=Dataset.from_pandas(sample(current[columns], CURRENT_ROWS), data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        snapshot.save_html(str(path))
        return path.read_text()


def _known(values: pd.Series, kind: str) -> pd.Series:
    """The values a test can use, as Evidently keeps them: no missing ones, no infinities."""
    if kind == "numerical":
        return values[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))]
    return values.dropna()


def _typed_columns(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec) -> list[tuple[str, str]]:
    prediction = [PREDICTION] if PREDICTION in reference and PREDICTION in current else []
    return [(c, "numerical") for c in (*spec.numbers, *prediction)] + [(c, "categorical") for c in spec.categorical]
