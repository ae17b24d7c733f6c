"""A weighted ensemble of fitted pipelines: scikit-learn's own soft voting over frozen members, so it predicts,
logs, loads and serves like any one pipeline."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.ensemble import VotingClassifier, VotingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

ENSEMBLE = "ensemble"


def weighted(members: dict[str, Pipeline], weights: dict[str, int]) -> BaseEstimator:
    """The members with a positive weight, their class probabilities (or values) averaged by weight. Classifiers
    must share their classes; the vote learns them, and nothing else: its frozen members are not refitted."""
    chosen = [(name, FrozenEstimator(members[name])) for name, weight in weights.items() if weight > 0]
    votes = [weights[name] for name, _ in chosen]
    if not is_classifier(chosen[0][1].estimator):
        return VotingRegressor(chosen, weights=votes).fit(None, np.zeros(1))
    classes = [member.estimator.classes_ for _, member in chosen]
    if any(not np.array_equal(classes[0], other) for other in classes[1:]):
        raise ValueError(f"the members do not predict the same classes: {[c.tolist() for c in classes]}")
    return VotingClassifier(chosen, voting="soft", weights=votes).fit(None, classes[0])


def recipe(model: BaseEstimator) -> BaseEstimator:
    """`model` unfitted, to be fitted again on other rows: an ensemble refits each member's recipe and keeps its
    weights."""
    if not is_ensemble(model):
        return clone(model)
    return clone(model).set_params(estimators=[(name, clone(member.estimator)) for name, member in model.estimators])


def is_ensemble(model: BaseEstimator) -> bool:
    return isinstance(model, VotingClassifier | VotingRegressor)


def members(model: BaseEstimator) -> list[Pipeline]:
    """The fitted pipelines a model predicts with: an ensemble's members, or the model itself."""
    if is_ensemble(model):
        return [member.estimator if isinstance(member, FrozenEstimator) else member for member in model.estimators_]
    return [model]


def votes(model: BaseEstimator) -> dict[str, float]:
    """Each member's weight in an ensemble's vote, as given; empty for a single pipeline."""
    if not is_ensemble(model):
        return {}
    return {name: weight for (name, _), weight in zip(model.estimators, model.weights, strict=True)}


def weights(model: BaseEstimator) -> dict[str, float]:
    """Each member's share of an ensemble's vote; empty for a single pipeline."""
    given = votes(model)
    return {name: weight / sum(given.values()) for name, weight in given.items()}
