"""The first promotion's evidence when the holdout is too small to decide: a rolling-origin backtest of the
challenger's recipe against the baseline over the whole training history."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nexus_assets.features.split import PARTS, TrainingDataset
from nexus_assets.training.candidates import baseline, fitted
from nexus_assets.training.metrics import Metric, score_rows
from nexus_core.ensemble import recipe
from nexus_core.features import model_inputs
from nexus_core.inference import THRESHOLD, decision_threshold, predict
from nexus_core.inference import classes as model_classes

# The newest rows a backtest refits on: it runs only when the holdout cannot decide, which on large data means a
# gain too small to matter, and this bounds its cost there.
MAX_ROWS = 100_000
FIRST_TRAIN_SHARE = 0.4  # the first fold trains on the oldest 40% of the history; the rest is tested in K blocks
FOLD_COLUMNS = ["fold", "trained_on", "tested_on", "challenger", "baseline", "gain", "low", "high"]
DRAWS = 400


@dataclass(frozen=True)
class Backtest:
    folds: pd.DataFrame  # FOLD_COLUMNS, oldest fold first
    interval: tuple[float, float]  # of the folds' mean gain, at the gate's confidence

    @property
    def gain(self) -> float:
        return float(self.scored["gain"].mean())

    @property
    def baseline_score(self) -> float:
        return float(self.scored["baseline"].mean())

    @property
    def scored(self) -> pd.DataFrame:
        """The folds both models could be scored on."""
        return self.folds.dropna(subset=["gain"])

    def record(self) -> dict:
        """The evidence as the audit log keeps it."""
        return {
            "folds": self.folds.to_dict("records"),
            "mean_gain": self.gain,
            "gain_interval": list(self.interval),
        }


def backtest(
    metric: Metric, task: str, target: str, challenger, data: TrainingDataset, folds: int, confidence: float, seed: int
) -> Backtest:
    """Refit `challenger`'s recipe (its pipeline, unfitted) and the baseline on every row before each of `folds`
    time-ordered blocks of the history and score both on the block; bootstrap each block's gain (paired by row)
    and their mean (each block resampled on its own, as each has its own models)."""
    history = pd.concat([data.part(name) for name in PARTS], ignore_index=True).tail(MAX_ROWS)
    X, y = model_inputs(history, data.spec), history[target].to_numpy()
    classes = None if task == "regression" else np.array(sorted(pd.unique(y)))
    bounds = np.linspace(int(len(history) * FIRST_TRAIN_SHARE), len(history), folds + 1).astype(int)
    rng = np.random.default_rng(seed)
    rows, draws = [], []
    for number, (start, end) in enumerate(itertools.pairwise(bounds), 1):
        models = {"challenger": recipe(challenger), "baseline": baseline(task)}
        if decision_threshold(challenger) is not None:
            setattr(models["challenger"], THRESHOLD, decision_threshold(challenger))
        outputs = []
        for model in models.values():
            fitted(model, X.iloc[:start], pd.Series(y[:start]))
            outputs.append(_aligned(predict(model, X.iloc[start:end]), model_classes(model), classes))
        truth = y[start:end]

        def gain(rows: np.ndarray, truth=truth, outputs=outputs) -> float:
            new, old = (
                score_rows(metric, truth[rows], (p[rows], None if s is None else s[rows]), classes) for p, s in outputs
            )
            return metric.gain(new, old)

        scores = [score_rows(metric, truth, output, classes) for output in outputs]
        draws.append([gain(rng.integers(0, len(truth), len(truth))) for _ in range(DRAWS)])
        low, high = _percentiles(draws[-1], confidence)
        rows.append([number, int(start), int(end - start), *scores, metric.gain(*scores), low, high])
    folds_table = pd.DataFrame(rows, columns=FOLD_COLUMNS)
    with warnings.catch_warnings():  # a fold no draw could score is left out of the mean
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(np.array(draws), axis=0)
    return Backtest(folds_table, _percentiles(means, confidence))


def _percentiles(values, confidence: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < DRAWS // 2:
        return np.nan, np.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _aligned(output: tuple, fitted: np.ndarray | None, classes: np.ndarray | None) -> tuple:
    """(predictions, scores) with the scores' columns in the history's class order: a fold's training rows may
    lack a class the others hold."""
    predictions, scores = output
    if scores is None or classes is None:
        return predictions, scores
    aligned = np.zeros((len(scores), len(classes)))
    aligned[:, np.searchsorted(classes, fitted)] = scores
    return predictions, aligned
