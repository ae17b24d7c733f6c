"""Inference as training, batch scoring and serving all do it: labels and class probabilities in one pass."""

from __future__ import annotations

import numpy as np
import pandas as pd


def predict(model, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """What `model` predicts per row and, for classifiers, each class's probability (`classes_` order), in one pass."""
    if not hasattr(model, "predict_proba"):
        return model.predict(X), None
    probabilities = model.predict_proba(X)
    return model.classes_[probabilities.argmax(axis=1)], probabilities
