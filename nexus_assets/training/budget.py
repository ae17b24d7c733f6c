"""Fitting a family within a wall-clock deadline: boosting and forests stop adding iterations (trees) when the next
ones would not end in time, and keep what they have; `training.time_budget_seconds` is shared by the families."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd
from catboost import CatBoost
from lightgbm import LGBMModel
from lightgbm.callback import EarlyStopException
from sklearn.base import BaseEstimator, is_classifier
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import Pipeline

from nexus_core.features import native_columns

# The parameter counting each family's iterations, for the ones scikit-learn can grow with warm_start.
_GROWN = {
    HistGradientBoostingClassifier: "max_iter",
    HistGradientBoostingRegressor: "max_iter",
    RandomForestClassifier: "n_estimators",
    RandomForestRegressor: "n_estimators",
}
EARLY_STOPPING = 50  # CatBoost's rounds without a gain on validation before it stops
FIRST_STAGE = 40  # the first call fits 1/40 of the iterations, to time one before committing to the rest


@dataclass
class Stopped:
    """How far a family got before its deadline."""

    iterations: int
    of: int

    def __str__(self) -> str:
        return f"stopped at the time budget after {self.iterations} of {self.of} iterations"


def fit_by(
    pipe: Pipeline,
    X: pd.DataFrame,
    y: pd.Series,
    deadline: float,
    validation: tuple[pd.DataFrame, pd.Series] | None = None,
    **fit,
) -> Stopped | None:
    """Fit `pipe` (feature step, then model) on (X, y), its model growing only while the next iterations end before
    `deadline` (`time.monotonic()`); how far it got when it stopped early, else None. `fit` goes to the model;
    CatBoost also stops early on `validation` when it stops improving there."""
    features, model = pipe.steps[0][1], pipe.steps[-1][1]
    Xt = features.fit_transform(X, y)
    if isinstance(model, CatBoost):
        return _catboost_by(model, features, Xt, y, deadline, validation, **fit)
    if isinstance(model, LGBMModel):
        return _boost_by(model, Xt, y, deadline, **fit)
    if type(model) in _GROWN:
        return _grow_by(model, _GROWN[type(model)], Xt, y, deadline, **fit)
    model.fit(Xt, y, **fit)  # a linear model is one solve: it cannot stop half way
    return None


def _grow_by(model: BaseEstimator, count: str, X, y, deadline: float, **fit) -> Stopped | None:
    total, started = model.get_params()[count], time.monotonic()
    if deadline == math.inf:
        model.fit(X, y, **fit)
        return None
    done = max(1, total // FIRST_STAGE)
    model.set_params(warm_start=True, **{count: done}).fit(X, y, **fit)
    while done < total:
        now = time.monotonic()
        each = (now - started) / done
        more = min(total - done, int((deadline - now) / each))  # as many as end in time; all of them if they do
        if more < 1:
            break
        done += more
        model.set_params(**{count: done}).fit(X, y, **fit)
    model.set_params(warm_start=False)
    return Stopped(done, total) if done < total else None


def _boost_by(model: LGBMModel, X, y, deadline: float, **fit) -> Stopped | None:
    started = time.monotonic()

    def stop_in_time(env) -> None:  # after each iteration: stop if the next would not end in time
        now = time.monotonic()
        if now + (now - started) / (env.iteration + 1) > deadline:
            raise EarlyStopException(env.iteration, env.evaluation_result_list or [])

    model.fit(X, y, callbacks=[stop_in_time], **fit)
    done, total = model.booster_.current_iteration(), model.get_params()["n_estimators"]
    return Stopped(done, total) if done < total else None


class _InTime:
    """CatBoost's callback: go on while the next iteration ends before the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline, self.started, self.done, self.stopped = deadline, time.monotonic(), 0, False

    def after_iteration(self, info) -> bool:
        now, self.done = time.monotonic(), info.iteration
        self.stopped = now + (now - self.started) / info.iteration > self.deadline
        return not self.stopped


def _catboost_by(
    model: CatBoost, features, X, y: pd.Series, deadline: float, validation: tuple | None, **fit
) -> Stopped | None:
    in_time, eval_set, classifier = _InTime(deadline), None, is_classifier(model)
    if classifier:  # sorted, as scikit-learn's classifiers order them (an ensemble averages them column by column)
        model.set_params(class_names=sorted(pd.unique(y)))
    if validation is not None:
        X_val, y_val = validation
        known = y_val.isin(pd.unique(y)) if classifier else pd.Series(True, index=y_val.index)
        if known.any():  # a class the training rows lack cannot be scored
            eval_set = (features.transform(X_val[known.to_numpy()]), y_val[known.to_numpy()])
    model.fit(
        X,
        y,
        cat_features=native_columns(features),
        eval_set=eval_set,
        early_stopping_rounds=EARLY_STOPPING if eval_set is not None else None,
        callbacks=[in_time],
        **fit,
    )
    return Stopped(in_time.done, model.get_params()["iterations"]) if in_time.stopped else None
