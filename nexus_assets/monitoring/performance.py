"""The performance judgement: each model version's selection metric on the labelled predictions of a partition,
against its own holdout score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nexus_assets.training.metrics import Metric
from nexus_core.config import NexusConfig


@dataclass
class Judgement:
    table: pd.DataFrame  # model_version, rows, <metric>, holdout, gap, degraded (None: too few rows to judge)
    description: str

    @property
    def degraded(self) -> bool:
        return bool(self.table["degraded"].eq(True).any())


def judge(config: NexusConfig, metric: Metric, joined: pd.DataFrame, holdout: Callable[[str], float]) -> Judgement:
    """Score `joined` (stored predictions with their labels) per version; `holdout(version)` is its holdout score.
    A version degrades when it falls more than `monitoring.degradation_tolerance` below it (a share of it for
    regression, where scores are in the target's units)."""
    monitoring, minimum = config.monitoring, config.monitoring.min_labelled_rows
    rows = []
    for version, part in joined.groupby("model_version"):
        score, reference = stored_score(config, metric, part), holdout(str(version))
        gap = metric.gain(score, reference) if not (np.isnan(score) or np.isnan(reference)) else np.nan
        allowed = monitoring.degradation_tolerance * (abs(reference) if config.dataset.task == "regression" else 1)
        judged = len(part) >= minimum and not np.isnan(gap)
        rows.append(
            {
                "model_version": str(version),
                "rows": len(part),
                metric.name: score,
                "holdout": reference,
                "gap": gap,
                "degraded": bool(gap < -allowed) if judged else None,
            }
        )
    table = pd.DataFrame(rows, columns=["model_version", "rows", metric.name, "holdout", "gap", "degraded"])
    return Judgement(table, _describe(table, metric, len(joined), minimum))


def _describe(table: pd.DataFrame, metric: Metric, labelled: int, minimum: int) -> str:
    judged = table[table["rows"] >= minimum]
    if judged.empty:
        return f"not judged: {labelled} labelled prediction(s) < monitoring.min_labelled_rows={minimum}"
    degraded = judged[judged["degraded"].eq(True)]
    if not degraded.empty:
        return "; ".join(
            f"version {r.model_version}: {metric.name} {r[metric.name]:.4f} vs holdout {r.holdout:.4f}"
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
    classes = None  # stored labels are text; a binary model's positive class is the configured second one
    if config.dataset.task == "binary_classification" and config.dataset.classes:
        classes = [str(c) for c in config.dataset.classes]
    if config.dataset.task == "regression":
        y, values = rows["label"].astype(float), rows["prediction"].astype(float)
    elif metric.needs_scores:
        y, values = rows["label"].astype(str), rows["probability"].to_numpy()
    else:
        y, values = rows["label"].astype(str), rows["prediction"]
    try:
        return metric.fn(y, values, classes)
    except ValueError:  # e.g. a partition whose labels hold one class
        return np.nan
