"""The weighted ensemble candidate: Caruana et al.'s greedy ensemble selection (2004) over the fitted families, on the
selection windows (the validation split and older ones)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.pipeline import Pipeline

from nexus_core import ensemble
from nexus_core.config import NexusConfig
from nexus_core.inference import TARGET_RANGE, target_range
from nexus_core.inference import classes as model_classes

from .metrics import Metric, metrics_for, score_rows

ROUNDS = 25  # members added one at a time, with replacement: weights in 25ths, as AutoGluon's default


Windows = list[tuple[pd.DataFrame, pd.Series]]


def select(config: NexusConfig, fitted: dict[str, list[Pipeline]], windows: Windows) -> list[BaseEstimator] | None:
    """The fitted families averaged with the weights that score best over `windows` (`fitted[family][i]` is the
    family as fitted for `windows[i]`): each round adds the family (again, or a new one) that most improves the
    average, and the best round's counts are the weights. One ensemble per window, the first the candidate; None
    when the best average is one family alone (it is already a candidate) or nothing can be scored."""
    known = [model_classes(model) for models in fitted.values() for model in models]
    if any(c is not None and not np.array_equal(c, known[0]) for c in known):
        return None  # a family trained on the cluster's longer history may know classes the window lacks
    weights = greedy_weights(config, fitted, windows)
    if sum(weight > 0 for weight in weights.values()) < 2:
        return None
    ensembles = []
    for n in range(len(windows)):
        members = {family: models[n] for family, models in fitted.items()}
        model = ensemble.weighted(members, weights)
        if (limits := _widest_range(members)) is not None:  # answers are clipped to it, as a member's are
            setattr(model, TARGET_RANGE, limits)
        ensembles.append(model)
    return ensembles


def greedy_weights(config: NexusConfig, fitted: dict[str, list[Pipeline]], windows: Windows) -> dict[str, int]:
    """How many of the best round's votes each family holds (zero for the ones never picked), its predictions on
    every window scored as one."""
    metric = metrics_for(config.dataset.task)[config.metric]
    first = next(iter(fitted.values()))[0]
    classifier, classes = is_classifier(first), model_classes(first)

    def output(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(X) if classifier else model.predict(X)

    outputs = {
        family: np.concatenate([output(model, X) for model, (X, _) in zip(models, windows, strict=True)])
        for family, models in fitted.items()
    }
    limits = _widest_range({family: models[0] for family, models in fitted.items()})
    y = np.concatenate([np.asarray(y) for _, y in windows])

    def score(average: np.ndarray) -> float:
        if classifier:
            return score_rows(metric, y, (classes[average.argmax(axis=1)], average), classes)
        return score_rows(metric, y, (average if limits is None else np.clip(average, *limits), None), classes)

    counts, total, best, best_counts = Counter(), None, np.nan, {}
    for picked in range(1, ROUNDS + 1):
        trials = [(score((output if total is None else total + output) / picked), f) for f, output in outputs.items()]
        trials = [(value, f) for value, f in trials if not np.isnan(value)]
        if not trials:
            return {}
        value, family = trials[0]
        for other, name in trials[1:]:  # ties go to the earlier family: the simpler, as the candidates are listed
            if _improves(metric, other, value):
                value, family = other, name
        counts[family] += 1
        total = outputs[family] if total is None else total + outputs[family]
        if np.isnan(best) or _improves(metric, value, best):
            best, best_counts = value, dict(counts)
    return {family: best_counts.get(family, 0) for family in fitted}


def _improves(metric: Metric, new: float, old: float) -> bool:
    """Better by more than rounding: the same member added again must not count as a gain."""
    return metric.gain(new, old) > 1e-9 * max(1.0, abs(old))


def _widest_range(fitted: dict[str, Pipeline]) -> list[float] | None:
    """The lowest and highest target value any regression member learned from."""
    ranges = [limits for model in fitted.values() if (limits := target_range(model)) is not None]
    return [min(low for low, _ in ranges), max(high for _, high in ranges)] if ranges else None
