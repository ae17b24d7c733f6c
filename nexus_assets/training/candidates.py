"""Candidate model families, as scikit-learn pipelines that start with the shared feature transform."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import metadata

import pandas as pd
from catboost import CatBoost, CatBoostClassifier, CatBoostRegressor
from lightgbm import LGBMClassifier, LGBMRegressor
from mlflow import sklearn as mlflow_sklearn
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from sklearn.base import BaseEstimator, is_classifier
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from nexus_assets.features.split import TrainingDataset
from nexus_assets.training.budget import Stopped, fit_by
from nexus_core import registry
from nexus_core.config import NexusConfig
from nexus_core.ensemble import weights
from nexus_core.features import build_preprocessor, model_inputs
from nexus_core.inference import TARGET_RANGE, predict

# Declared rather than inferred: MLflow's inference imports the model in a subprocess, 4 s per model.
PIP_REQUIREMENTS = [
    f"{package}=={metadata.version(package)}"
    for package in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy", "lightgbm", "catboost")
]


@dataclass
class Candidate:
    """One trained candidate as tracked in MLflow."""

    family: str
    run_id: str
    model_uri: str
    validation: dict[str, float]
    holdout: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)
    threshold: float | None = None  # a binary classifier's decision threshold
    older: list[dict[str, float]] = field(default_factory=list)  # scores on the older windows, newest first

    def selection_score(self, metric: str) -> float:
        """`metric` averaged over the validation part and the older windows, where it can be computed (NaN if
        nowhere): what the challenger is chosen by."""
        scores = [s for s in (self.validation[metric], *(w[metric] for w in self.older)) if not math.isnan(s)]
        return sum(scores) / len(scores) if scores else math.nan


def log_pipeline(model: BaseEstimator, family: str, example: pd.DataFrame, metadata: dict | None = None) -> ModelInfo:
    """`model` logged in the active MLflow run the way NexusML loads it back: in the skops format, asking to trust
    exactly its families' types, with its signature and input example."""
    return mlflow_sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=registry.trusted_types([family, *weights(model)]),
        pip_requirements=PIP_REQUIREMENTS,
        signature=infer_signature(example, predict(model, example)[0]),  # labels (CatBoost's own are 2-D)
        input_example=example,
        metadata=metadata,
    )


def estimator(family: str, task: str, seed: int) -> BaseEstimator:
    regression = task == "regression"
    if family == "linear":
        return Ridge(alpha=1.0) if regression else LogisticRegression(max_iter=2000, C=1.0)
    if family == "random_forest":
        kind = RandomForestRegressor if regression else RandomForestClassifier
        # Depth-capped so the logged model stays a few MB.
        return kind(n_estimators=100, max_depth=10, min_samples_leaf=10, n_jobs=-1, random_state=seed)
    if family == "hist_gradient_boosting":
        kind = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
        return kind(max_iter=200, learning_rate=0.08, early_stopping=False, random_state=seed)
    if family == "lightgbm":
        kind = LGBMRegressor if regression else LGBMClassifier
        # deterministic (with row-wise histograms) so the same window gives the same model, as the others do
        return kind(
            n_estimators=300,
            learning_rate=0.05,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=seed,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
    if family == "catboost":
        kind = CatBoostRegressor if regression else CatBoostClassifier
        # categories of up to 64 levels one-hot: CatBoost's target statistics alone went far wrong on a 51-level
        # column of a time-ordered table (RMSE 179 against 24; issue 32); many-level ones (ids) keep them
        return kind(iterations=1000, one_hot_max_size=64, random_seed=seed, allow_writing_files=False, verbose=0)
    raise ValueError(f"unknown model family {family!r}")


def wide_input(model: BaseEstimator) -> bool:
    """Whether `model` gets the wide sparse encoding of text: linear models weigh thousands of sparse terms well;
    trees split far faster on the narrow dense one (and histogram boosting takes dense input only)."""
    return isinstance(model, (Ridge, LogisticRegression))


def baseline(task: str) -> BaseEstimator:
    """The trivial model a first champion has to beat: the majority class, or the mean."""
    return DummyRegressor(strategy="mean") if task == "regression" else DummyClassifier(strategy="prior")


def pipeline(config: NexusConfig, data: TrainingDataset, model: BaseEstimator) -> Pipeline:
    """`model` behind the feature transform, fitted on the training part."""
    return budgeted(config, data, model, None)[0]


def budgeted(
    config: NexusConfig, data: TrainingDataset, model: BaseEstimator, deadline: float | None
) -> tuple[Pipeline, Stopped | None]:
    """`model` behind the feature transform, fitted on the training part by `deadline` (`time.monotonic()`; None:
    however long it takes), and how far it got if the deadline stopped it."""
    regression, native = config.dataset.task == "regression", isinstance(model, CatBoost)
    features = build_preprocessor(data.spec, not wide_input(model), config.model.seed, regression, native)
    pipe = Pipeline([("features", features), ("model", model)])
    X, y = model_inputs(data.train, data.spec), target(config, data.train)
    validation = model_inputs(data.validation, data.spec), target(config, data.validation)
    weights = {} if data.weights is None else {"sample_weight": data.weights}
    stopped = fit_by(pipe, X, y, math.inf if deadline is None else deadline, validation, **weights)
    return _ranged(pipe, y), stopped


def fitted(model: Pipeline, X: pd.DataFrame, y: pd.Series, **fit) -> Pipeline:
    """`model` fitted on (X, y); a regressor also carries the range of the target it learned from, inside the
    logged artifact, and every answer is clipped to it (`nexus_core.inference.bounded`)."""
    return _ranged(model.fit(X, y, **fit), y)


def _ranged(model: Pipeline, y: pd.Series) -> Pipeline:
    if not is_classifier(model):
        setattr(model, TARGET_RANGE, [float(y.min()), float(y.max())])
    return model


def target(config: NexusConfig, frame: pd.DataFrame) -> pd.Series:
    return frame[config.dataset.target]


def check_trainable(config: NexusConfig, data: TrainingDataset) -> None:
    """Stop before anything is tracked or registered when the data cannot make a model."""
    name = config.dataset.target
    y = data.train[name]
    if y.isna().all():
        raise ValueError(f"target {name!r} is missing in every training row; fix the source's labels")
    rows = len(data.train)
    if rows < config.training.min_rows:
        raise ValueError(
            f"only {rows} training rows, fewer than training.min_rows={config.training.min_rows}; bring more rows "
            f"(or materialize more partitions of raw_data and features), or lower training.min_rows in {config.path}"
        )
    if y.isna().any():
        raise ValueError(f"target {name!r} is missing in {int(y.isna().sum())} training rows")
    if config.dataset.task != "regression" and y.nunique() < 2:
        raise ValueError(
            f"target {name!r} holds a single class ({y.unique().tolist()[0]!r}) in the training window; "
            "a classifier needs at least two"
        )
