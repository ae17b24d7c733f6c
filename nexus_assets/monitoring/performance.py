"""The performance judgement: each model version's selection metric on the labelled predictions of a partition,
against its own holdout score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nexus_assets.training.metrics import Metric, bootstrap_interval
from nexus_core.config import NexusConfig


@dataclass
class Judgement:
    table: pd.DataFrame  # model_version, rows, <metric>, low, high (a fall's), holdout, gap, degraded (None: unjudged)
    description: str

    @property
    def degraded(self) -> bool:
        return bool(self.table["degraded"].eq(True).any())


def judge(config: NexusConfig, metric: Metric, joined: pd.DataFrame, holdout: Callable[[str], float]) -> Judgement:
    """Score `joined` (stored predictions with their labels) per version; `holdout(version)` is its holdout score.
    A version degrades when even the optimistic end of its score's `monitoring.degradation_confidence` interval
    (a bootstrap of the partition's rows) falls more than `monitoring.degradation_tolerance` below it (a share of
    it for regression, where scores are in the target's units): a small partition's bad luck is not an alarm."""
    monitoring, minimum = config.monitoring, config.monitoring.min_labelled_rows
    rows = []
    for version, part in joined.groupby("model_version"):
        y, values, classes = _scored(config, metric, part)
        score, reference = _score(metric, y, values, classes), holdout(str(version))
        gap = metric.gain(score, reference) if not (np.isnan(score) or np.isnan(reference)) else np.nan
        allowed = monitoring.degradation_tolerance * (abs(reference) if config.dataset.task == "regression" else 1)
        judged = len(part) >= minimum and not np.isnan(gap)
        low = high = best_gap = np.nan
        if judged and gap < -allowed and monitoring.degradation_confidence:  # only a fall needs its interval
            low, high = _interval(metric, y, values, classes, monitoring.degradation_confidence)
            best_gap = metric.gain(high if metric.higher_is_better else low, reference)
        rows.append(
            {
                "model_version": str(version),
                "rows": len(part),
                metric.name: score,
                "low": low,
                "high": high,
                "holdout": reference,
                "gap": gap,
                "degraded": bool((best_gap if not np.isnan(best_gap) else gap) < -allowed) if judged else None,
            }
        )
    columns = ["model_version", "rows", metric.name, "low", "high", "holdout", "gap", "degraded"]
    table = pd.DataFrame(rows, columns=columns)
    return Judgement(table, _describe(table, metric, len(joined), minimum, monitoring.degradation_confidence))


def _describe(table: pd.DataFrame, metric: Metric, labelled: int, minimum: int, confidence: float) -> str:
    judged = table[table["rows"] >= minimum]
    if judged.empty:
        return f"not judged: {labelled} labelled prediction(s) < monitoring.min_labelled_rows={minimum}"
    degraded = judged[judged["degraded"].eq(True)]
    if not degraded.empty:
        return "; ".join(
            f"version {r.model_version}: {metric.name} {r[metric.name]:.4f} "
            f"({confidence:.0%} interval {r.low:.4f} to {r.high:.4f}) vs holdout {r.holdout:.4f}"
            for _, r in degraded.iterrows()
        )
    unknown = judged.loc[judged["holdout"].isna(), "model_version"].tolist()
    if unknown:
        return (
            f"version(s) {', '.join(unknown)} have no holdout score to compare with (deleted from the registry?); "
            "the rest within tolerance"
        )
    return "every version within tolerance of its holdout score"


def stored_score(config: NexusConfig, metric: Metric, rows: pd.DataFrame) -> float:
    """`metric` of stored rows (label, prediction, probability), NaN when it cannot be computed."""
    return _score(metric, *_scored(config, metric, rows))


def _scored(config: NexusConfig, metric: Metric, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list | None]:
    """(labels, what the metric scores, classes) of stored rows."""
    classes = None  # stored labels are text; a binary model's positive class is the configured second one
    if config.dataset.task == "binary_classification" and config.dataset.classes:
        classes = [str(c) for c in config.dataset.classes]
    if config.dataset.task == "regression":
        return rows["label"].astype(float).to_numpy(), rows["prediction"].astype(float).to_numpy(), None
    values = rows["probability"] if metric.needs_scores else rows["prediction"]
    return rows["label"].astype(str).to_numpy(), values.to_numpy(), classes


def _score(metric: Metric, y: np.ndarray, values: np.ndarray, classes: list | None) -> float:
    try:
        return metric.fn(y, values, classes)
    except ValueError:  # e.g. a partition whose labels hold one class
        return np.nan


def _interval(metric: Metric, y: np.ndarray, values: np.ndarray, classes, confidence: float) -> tuple[float, float]:
    return bootstrap_interval(lambda rows: _score(metric, y[rows], values[rows], classes), len(y), confidence)
