"""The metrics models are compared by, per task, and which direction is better."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn import metrics

from nexus_core.inference import classes as model_classes
from nexus_core.inference import predict


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs_scores: bool
    fn: Callable[[np.ndarray, np.ndarray, list | None], float]  # (labels, predictions or scores, classes)

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        """True when `a` beats `b` by at least `margin`."""
        return a - b >= margin if self.higher_is_better else b - a >= margin

    def gain(self, new: float, old: float) -> float:
        """How much better `new` is than `old` (negative when worse)."""
        return new - old if self.higher_is_better else old - new


# The bootstrap computes these hundreds of times per decision: plain numpy, the same numbers as sklearn's
# functions without their per-call input validation.
def _rmse(y, p, classes=None) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - np.asarray(p, dtype=float)) ** 2)))


def _mae(y, p, classes=None) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=float) - np.asarray(p, dtype=float))))


def _accuracy(y, p, classes=None) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(p)))


def _auc(y, scores, classes=None) -> float:
    """Binary AUC; for several classes the mean one-vs-rest AUC over the classes the rows hold (a split that lacks
    some classes still scores the others). NaN when fewer than two classes are present."""
    y = np.asarray(y)
    if scores.ndim == 1 or scores.shape[1] == 2:
        scores = scores if scores.ndim == 1 else scores[:, 1]
        labels = np.unique(y)
        return _ranked_auc(y == labels[1], scores) if len(labels) == 2 else np.nan
    classes = list(range(scores.shape[1])) if classes is None else list(classes)
    present = [c for c in classes if 0 < (y == c).sum() < len(y)]
    if not present:
        return np.nan
    return float(np.mean([_ranked_auc(y == c, scores[:, classes.index(c)]) for c in present]))


def _ranked_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """`roc_auc_score(positive, scores)` from the Mann-Whitney U statistic (ties count half, as the ROC's
    trapezoids do)."""
    ranks = rankdata(scores)
    hits = int(positive.sum())
    return float((ranks[positive].sum() - hits * (hits + 1) / 2) / (hits * (len(positive) - hits)))


def _by_class(fn: Callable[..., float]) -> Callable[[np.ndarray, np.ndarray, list | None], float]:
    """`fn` of the positive (last) class for a binary model, macro-averaged over the classes for several."""

    def score(y, predictions, classes=None) -> float:
        if classes is not None and len(classes) == 2:
            return float(fn(y, predictions, pos_label=classes[1], average="binary", zero_division=0))
        return float(fn(y, predictions, average="macro", zero_division=0))

    return score


def _brier(y, scores, classes=None) -> float:
    """Mean squared error of the class probabilities (binary: of the positive class's)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:  # the positive class's probability, as batch scoring stores it
        scores = np.column_stack([1 - scores, scores])
    classes = list(range(scores.shape[1])) if classes is None else list(classes)
    if scores.shape[1] == 2:
        return float(metrics.brier_score_loss(np.asarray(y) == classes[1], scores[:, 1]))
    onehot = np.asarray(y)[:, None] == np.asarray(classes)[None, :]
    return float(np.mean(np.sum((scores - onehot) ** 2, axis=1)))


CLASSIFICATION = {
    m.name: m
    for m in (
        Metric("roc_auc", True, True, _auc),
        Metric("accuracy", True, False, _accuracy),
        Metric("f1", True, False, _by_class(metrics.f1_score)),
        Metric("balanced_accuracy", True, False, lambda y, p, c=None: float(metrics.balanced_accuracy_score(y, p))),
        Metric("precision", True, False, _by_class(metrics.precision_score)),
        Metric("recall", True, False, _by_class(metrics.recall_score)),
        Metric("brier", False, True, _brier),
    )
}
REGRESSION = {
    m.name: m
    for m in (
        Metric("rmse", False, False, _rmse),
        Metric("mae", False, False, _mae),
        Metric("r2", True, False, lambda y, p, classes=None: float(metrics.r2_score(y, p))),
    )
}


def metrics_for(task: str) -> dict[str, Metric]:
    return REGRESSION if task == "regression" else CLASSIFICATION


def score_rows(metric: Metric, y: np.ndarray, output: tuple[np.ndarray, np.ndarray | None], classes) -> float:
    """`metric` of one model's (predictions, scores) against `y`, NaN when it cannot be computed."""
    predictions, scores = output
    if len(y) == 0 or (metric.needs_scores and scores is None):
        return np.nan
    return metric.fn(y, scores if metric.needs_scores else predictions, classes)


BOOTSTRAP_ROWS = 20_000  # larger holdouts are bootstrapped on a sample of this many rows, the spread rescaled


def paired_gain_interval(
    metric: Metric,
    y: pd.Series,
    outputs: tuple[tuple, tuple],
    confidence: float,
    draws: int = 400,
    seed: int = 0,
    max_rows: int = BOOTSTRAP_ROWS,
) -> tuple[float, float]:
    """The `confidence` interval of the challenger's gain over the reference (outputs in that order) by a paired
    bootstrap: both models are scored on the same resampled holdout rows, so only the difference varies. Each
    output is (predictions, scores, classes) as `predict` gives them."""
    y = np.asarray(y)

    def gain(rows) -> float:
        new, old = (
            score_rows(metric, y[rows], (p[rows], None if s is None else s[rows]), classes) for p, s, classes in outputs
        )
        return metric.gain(new, old)

    return bootstrap_interval(gain, len(y), confidence, draws, seed, max_rows)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    confidence: float,
    draws: int = 400,
    seed: int = 0,
    max_rows: int = BOOTSTRAP_ROWS,
) -> tuple[float, float]:
    """The `confidence` percentile-bootstrap interval of `statistic(row positions)` over `n` rows; (NaN, NaN)
    when it cannot be computed on most draws.

    Above `max_rows` rows the draws resample a fixed random sample of `max_rows` rows (an m-out-of-n bootstrap),
    and their spread around the sample's value is scaled by sqrt(m / n) around the whole set's value: the same
    interval for smooth metrics at a fixed cost (docs/benchmarks.md), instead of minutes on a million rows."""
    rng = np.random.default_rng(seed)
    every = np.arange(n)
    sample = every if n <= max_rows else np.sort(rng.choice(n, max_rows, replace=False))
    centre, scale = statistic(sample), np.sqrt(len(sample) / n) if n else 1.0
    deltas = [statistic(sample[rng.integers(0, len(sample), len(sample))]) - centre for _ in range(draws)]
    deltas = [d for d in deltas if not np.isnan(d)]
    if len(deltas) < draws // 2 or np.isnan(centre):
        return np.nan, np.nan
    whole = centre if len(sample) == n else statistic(every)
    tail = (1 - confidence) / 2 * 100
    low, high = whole + scale * np.percentile(deltas, [tail, 100 - tail])
    return float(low), float(high)


def evaluate(task: str, model, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Every metric of the task for `model` on (X, y); NaN for one that cannot be computed on these rows
    (`unscorable` says why)."""
    return evaluate_output(task, (*predict(model, X), model_classes(model)), y)


def evaluate_output(task: str, output: tuple, y: pd.Series) -> dict[str, float]:
    """Every metric of the task for one model's (predictions, scores, classes) on `y`."""
    predictions, scores, classes = output
    y = np.asarray(y)
    return {metric.name: score_rows(metric, y, (predictions, scores), classes) for metric in metrics_for(task).values()}


def unscorable(metric: str, y: pd.Series, part: str) -> str:
    """Why `metric` cannot be computed on `part`'s labels, and what to do."""
    if len(y) == 0:
        return f"{metric} cannot be computed: the {part} split has no rows; add data or lower the split fractions"
    return (
        f"{metric} cannot be computed on the {part} split: it holds {y.nunique()} class(es) "
        f"({', '.join(map(str, y.unique()[:5]))}); choose model.selection_metric: accuracy, or train on a wider window"
    )
