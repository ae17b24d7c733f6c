"""Inference as training, batch scoring and serving all do it: labels and class probabilities in one pass."""

from __future__ import annotations

import numpy as np
import pandas as pd

# A binary pipeline's decision threshold travels inside the logged artifact as this attribute (skops keeps it).
THRESHOLD = "nexus_decision_threshold_"


def decision_threshold(model) -> float | None:
    """The probability of the positive (second) class from which `model` predicts it; None: the likeliest class."""
    return getattr(model, THRESHOLD, None)


def predict(model, X: pd.DataFrame, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """What `model` predicts per row and, for classifiers, each class's probability (`classes_` order), in one pass.
    A binary model predicts its positive class from `threshold` on (default: its own decision threshold)."""
    if not hasattr(model, "predict_proba"):
        return model.predict(X), None
    probabilities = model.predict_proba(X)
    threshold = decision_threshold(model) if threshold is None else threshold
    if threshold is not None and probabilities.shape[1] == 2:
        return model.classes_[(probabilities[:, 1] >= threshold).astype(int)], probabilities
    return model.classes_[probabilities.argmax(axis=1)], probabilities
