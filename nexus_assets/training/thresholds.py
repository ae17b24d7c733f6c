"""The decision threshold of a binary classifier, chosen on the validation split for the configured objective."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, make_scorer, precision_score, recall_score
from sklearn.model_selection import TunedThresholdClassifierCV

from nexus_core.config import ThresholdConfig
from nexus_core.inference import classes as model_classes


def choose_threshold(setting: ThresholdConfig, model, X: pd.DataFrame, y: pd.Series) -> float | None:
    """The positive class's probability from which `model` (fitted) predicts it, or None for a model that is not a
    binary classifier or a validation split holding a single class."""
    classes = model_classes(model)
    if classes is None or len(classes) != 2:
        return None
    if setting.objective == "fixed":
        return setting.value
    if pd.Series(y).nunique() < 2:
        return None
    tuned = TunedThresholdClassifierCV(model, scoring=_scorer(setting, classes[1]), cv="prefit", refit=False)
    return float(tuned.fit(X, y).best_threshold_)


def _scorer(setting: ThresholdConfig, positive):
    if setting.objective == "f1":
        return make_scorer(f1_score, pos_label=positive, zero_division=0)
    if setting.objective == "recall":

        def precision_keeping_recall(y, predicted) -> float:
            recall = recall_score(y, predicted, pos_label=positive, zero_division=0)
            if recall < setting.min_recall:
                return recall - 1  # below every threshold that keeps the recall
            return precision_score(y, predicted, pos_label=positive, zero_division=0)

        return make_scorer(precision_keeping_recall)

    def saving(y, predicted) -> float:
        (_, false_positives), (false_negatives, _) = confusion_matrix(
            np.asarray(y) == positive, np.asarray(predicted) == positive, labels=[False, True]
        )
        return -(false_positives * setting.false_positive_cost + false_negatives * setting.false_negative_cost)

    return make_scorer(saving)
