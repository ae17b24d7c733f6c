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
from nexus_assets.monitoring.scoring import score
from nexus_core.features import FeatureSpec

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry

CURRENT_ROWS = 20_000
PREDICTION = "prediction_score"
CALIBRATION_PARTITIONS = 30  # training partitions whose drift scores show a column's usual variation


@dataclass
class Drift:
    share: float
    columns: pd.DataFrame  # column, method, score, threshold, usual, drifted

    @property
    def drifted(self) -> list[str]:
        return self.columns.loc[self.columns["drifted"], "column"].tolist()


def measure(
    reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, usual: dict[str, list[float]] | None = None
) -> Drift:
    """Each numeric and categorical feature (and the prediction score, when both frames have it) tested for drift
    by the test Evidently's `DataDriftPreset` chooses for it, with its default threshold: the same scores and
    decisions as the report, in milliseconds instead of the report's second (it renders plots for every column).
    Ids, text and lists are left out: most of their values are new in every partition; so is a column empty on
    either side.

    With `usual` (`calibrate`'s scores of the training partitions), a column drifts only if Evidently's test says
    so and its score is also beyond every training partition's: a column whose days differ among themselves
    (a weekday mix, the weather) is judged against that variety, not against sampling noise alone."""
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
        seen = (usual or {}).get(column)
        # p-values fall as drift grows; distances rise
        lower = "p_value" in test.display_name
        extreme = (min(seen) if lower else max(seen)) if seen else np.nan
        beyond = not seen or (result.drift_score < extreme if lower else result.drift_score > extreme)
        drifted = bool(result.drifted and beyond)
        rows.append([column, test.display_name, result.drift_score, result.actual_threshold, extreme, drifted])
    columns = pd.DataFrame(rows, columns=["column", "method", "score", "threshold", "usual", "drifted"])
    return Drift(float(columns["drifted"].mean()) if len(columns) else 0.0, columns)


def calibrate(reference: pd.DataFrame, partitions: list[pd.DataFrame], spec: FeatureSpec) -> dict[str, list[float]]:
    """Each column's drift score for each training partition against the reference: how far a day of the
    process the model learned from usually is from it (frames hold the prediction score when the reference does)."""
    scores: dict[str, list[float]] = {}
    for frame in partitions:
        for row in measure(reference, frame, spec).columns.itertuples():
            scores.setdefault(row.column, []).append(float(row.score))
    return scores


def calibrate_predictions(
    model, reference: pd.DataFrame, partitions: list[pd.DataFrame], spec: FeatureSpec
) -> dict[str, list[float]]:
    """`calibrate` of `model`'s prediction score alone (the data columns' calibration does not depend on it)."""

    def score_only(frame: pd.DataFrame) -> pd.DataFrame:
        return scored(model, frame, spec)[[PREDICTION]]

    return calibrate(score_only(reference), [score_only(frame) for frame in partitions], FeatureSpec((), ()))


def scored(model, frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """`frame` with `model`'s prediction score of each row beside its inputs."""
    return frame.assign(**{PREDICTION: prediction_score(score(model, frame[spec.columns])).to_numpy()})


def prediction_score(scored: pd.DataFrame) -> pd.Series:
    """The number whose drift we watch: the probability for classifiers, the prediction for regression."""
    return scored["probability"] if scored["probability"].notna().any() else scored["prediction"].astype(float)


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
