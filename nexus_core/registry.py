"""Aliases in the MLflow model registry: the registry is the truth about which version is champion."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from nexus_core.ensemble import ENSEMBLE
from nexus_core.trees import UnsafeModel, check_trees

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"

# Exactly the types skops does not trust by default that each family's fitted pipeline contains: the feature
# step's (the target encoder's cross-fitting splitter, our own time parts) and the model's.
_FEATURES = ["numpy.dtype", "sklearn.model_selection._split.KFold", "nexus_core.features.TimeParts"]
TRUSTED_TYPES = {
    "linear": _FEATURES,
    "random_forest": [*_FEATURES, "sklearn.tree._tree.Tree"],
    "hist_gradient_boosting": [*_FEATURES, "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    "lightgbm": [
        *_FEATURES,
        "collections.OrderedDict",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
    ],
    "catboost": [*_FEATURES, "catboost.core.CatBoostClassifier", "catboost.core.CatBoostRegressor"],
    ENSEMBLE: ["sklearn.utils._bunch.Bunch"],  # the soft vote's own part: it keeps its members by name in a Bunch
}
ALL_TRUSTED_TYPES = sorted({t for types in TRUSTED_TYPES.values() for t in types})
# Models loaded in this process, by their bytes and the types they asked to trust: a replay runs a day's scoring,
# drift and gate in one process, each loading the same version (skops' audit and construction take most of a
# second a model); a copy is handed out, so a caller's changes stay its own.
_LOADED: dict[str, BaseEstimator] = {}
_LOADED_MAX = 4


def trusted_types(families: Iterable[str]) -> list[str]:
    """The types a model made of these families (an ensemble: "ensemble" and its members') asks skops to trust."""
    return sorted({t for family in families for t in TRUSTED_TYPES[family]})


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version (as a string); empty when the model is not registered yet."""
    try:
        return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def register(client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, str]) -> str:
    """The version number for the run's model, reusing the one a retried run already registered."""
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return str(existing[0].version)
    return str(mlflow.register_model(model_uri, name, tags=tags).version)


def promote(client: MlflowClient, name: str, version: str) -> str | None:
    """Move `champion` to `version`; the old champion becomes `previous_champion`. Returns the old champion."""
    version = str(version)
    old = aliases(client, name).get(CHAMPION)
    if old == version:
        raise ValueError(f"version {version} of {name} already holds {CHAMPION!r}")
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "nexus.promoted_at", dt.datetime.now(dt.UTC).isoformat())
    return old


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Give `champion` back to `previous_champion`; the two swap. Returns (from, to)."""
    current = aliases(client, name)
    if PREVIOUS not in current:
        raise ValueError(f"{name} has no {PREVIOUS!r} alias to roll back to")
    old, restored = current.get(CHAMPION), current[PREVIOUS]
    promote(client, name, restored)
    return old, restored


def load_pipeline(model_uri: str) -> Pipeline | BaseEstimator:
    """Load a logged pipeline (or ensemble of pipelines) only if the types it asks skops to trust are on our explicit
    list and its trees are consistent. `model_uri` names one version (not an alias, which could move between reads)
    or a local folder."""
    if "@" in model_uri:
        raise ValueError(f"{model_uri}: resolve the alias to a version first, then load that version")
    if Path(model_uri).is_dir():
        return _load_local(model_uri)
    with tempfile.TemporaryDirectory() as tmp:
        return _load_local(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))


def _load_local(path: str) -> Pipeline | BaseEstimator:
    flavor = Model.load(path).flavors.get("sklearn", {})
    if flavor.get("serialization_format") != "skops":
        raise UnsafeModel(f"{path} is not stored in the skops format; refusing to unpickle it")
    asked = set(flavor.get("skops_trusted_types") or [])
    if not asked <= set(ALL_TRUSTED_TYPES):
        unknown = sorted(asked - set(ALL_TRUSTED_TYPES))
        raise UnsafeModel(f"the model asks to trust types outside the allowed list: {unknown}")
    content = hashlib.sha256((Path(path) / flavor["pickled_model"]).read_bytes())
    content.update("\n".join(sorted(asked)).encode())
    key = content.hexdigest()
    if key not in _LOADED:
        pipeline = mlflow.sklearn.load_model(path)
        check_trees(pipeline)
        while len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = pipeline
    return copy.deepcopy(_LOADED[key])
