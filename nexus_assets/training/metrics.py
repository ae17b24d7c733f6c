"""The metrics models are compared by, per task, and which direction is better."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs_scores: bool
    fn: Callable[..., float]

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        """True when `a` beats `b` by at least `margin`."""
        return a - b >= margin if self.higher_is_better else b - a >= margin

    def gain(self, new: float, old: float) -> float:
        """How much better `new` is than `old` (negative when worse)."""
        return new - old if self.higher_is_better else old - new


def _rmse(y, p) -> float:
    return float(np.sqrt(metrics.mean_squared_error(y, p)))


def _auc(y, scores) -> float:
    if scores.ndim == 2 and scores.shape[1] == 2:
        scores = scores[:, 1]
    return float(metrics.roc_auc_score(y, scores, multi_class="ovr"))


CLASSIFICATION = {
    m.name: m
    for m in (
        Metric("roc_auc", True, True, _auc),
        Metric("accuracy", True, False, lambda y, p: float(metrics.accuracy_score(y, p))),
        Metric("f1", True, False, lambda y, p: float(metrics.f1_score(y, p, average="macro"))),
        Metric("balanced_accuracy", True, False, lambda y, p: float(metrics.balanced_accuracy_score(y, p))),
    )
}
REGRESSION = {
    m.name: m
    for m in (
        Metric("rmse", False, False, _rmse),
        Metric("mae", False, False, lambda y, p: float(metrics.mean_absolute_error(y, p))),
        Metric("r2", True, False, lambda y, p: float(metrics.r2_score(y, p))),
    )
}


def metrics_for(task: str) -> dict[str, Metric]:
    return REGRESSION if task == "regression" else CLASSIFICATION


def predict(model, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """What `model` predicts per row and, for classifiers, each class's probability (`classes_` order), in one pass."""
    if not hasattr(model, "predict_proba"):
        return model.predict(X), None
    probabilities = model.predict_proba(X)
    return model.classes_[probabilities.argmax(axis=1)], probabilities


def evaluate(task: str, model, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Every metric of the task for `model` on (X, y); a metric that cannot be computed is left out."""
    predictions, scores = predict(model, X)
    out = {}
    for metric in metrics_for(task).values():
        try:
            out[metric.name] = metric.fn(y, scores if metric.needs_scores else predictions)
        except ValueError:  # e.g. AUC on a slice that holds one class
            continue
    return out
