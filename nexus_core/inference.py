"""Inference as training, batch scoring and serving all do it: labels and class probabilities in one pass."""

from __future__ import annotations

import numpy as np
import pandas as pd

# A binary pipeline's decision threshold travels inside the logged artifact as this attribute (skops keeps it).
THRESHOLD = "nexus_decision_threshold_"
# So does a regression pipeline's target range: the lowest and highest value it learned from.
TARGET_RANGE = "nexus_target_range_"


def classes(model) -> np.ndarray | None:
    """A classifier's classes, in its probabilities' order; None for a regressor (CatBoost's carry an empty list)."""
    found = getattr(model, "classes_", None)
    return None if found is None or len(found) == 0 else found


def decision_threshold(model) -> float | None:
    """The probability of the positive (second) class from which `model` predicts it; None: the likeliest class."""
    return getattr(model, THRESHOLD, None)


def target_range(model) -> tuple[float, float] | None:
    """The lowest and highest target value a regression model learned from; None when it carries none."""
    return getattr(model, TARGET_RANGE, None)


def bounded(model, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A regression model's answers clipped to the target range it learned from, and which ones were: a linear
    model asked about a season it has not seen can answer far outside anything the data supports."""
    limits = target_range(model)
    if limits is None:
        return values, np.zeros(len(values), dtype=bool)
    clipped = np.clip(values, *limits)
    return clipped, clipped != values


def predict(model, X: pd.DataFrame, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """What `model` predicts per row and, for classifiers, each class's probability (`classes_` order), in one pass.
    A binary model predicts its positive class from `threshold` on (default: its own decision threshold)."""
    if not hasattr(model, "predict_proba"):
        return bounded(model, model.predict(X))[0], None
    probabilities = model.predict_proba(X)
    threshold = decision_threshold(model) if threshold is None else threshold
    if threshold is not None and probabilities.shape[1] == 2:
        return model.classes_[(probabilities[:, 1] >= threshold).astype(int)], probabilities
    return model.classes_[probabilities.argmax(axis=1)], probabilities
