"""The catboost family: categories reach CatBoost as text (its own ordered target statistics, one-hot up to 64
levels), it stops on the validation split, and it is logged, loaded through the trusted types and the consistency
check, registered and served like the others."""

from __future__ import annotations

import time

import pytest
import yaml

from nexus_assets.training.candidates import budgeted, estimator, pipeline
from nexus_assets.training.metrics import evaluate
from nexus_cli.runs import materialize
from nexus_core import registry
from nexus_core.config import load_config
from nexus_core.features import build_preprocessor, model_inputs
from nexus_core.names import TRAINING_CHAIN
from nexus_core.trees import UnsafeModel, check_trees
from nexus_defs.definitions import build_definitions
from nexus_resources.modes import build_resources
from serving.model import load_version


def test_catboost_reads_the_categories_as_they_are_and_stops_when_validation_stops_improving(diamonds):
    config, data = diamonds
    assert set(data.spec.categorical) == {"cut", "color", "clarity"}
    model = pipeline(config, data, estimator("catboost", "regression", 7))
    booster, width = model[-1], len(data.spec.numeric) + 3
    assert sorted(booster.get_cat_feature_indices()) == list(range(len(data.spec.numeric), width)), (
        "the three categories, as text after the numbers"
    )
    assert check_trees(model) == booster.tree_count_ < 1000, "early stopping on the validation split"
    X, y = model_inputs(data.holdout, data.spec), data.holdout["price"]
    scores = {
        family: evaluate("regression", pipeline(config, data, estimator(family, "regression", 7)), X, y)["rmse"]
        for family in ("linear", "hist_gradient_boosting")
    } | {"catboost": evaluate("regression", model, X, y)["rmse"]}
    print(f"diamonds holdout rmse: {scores}")
    assert scores["catboost"] < scores["linear"]
    # a deadline already passed: one iteration, reported
    stopped = budgeted(config, data, estimator("catboost", "regression", 7), time.monotonic())[1]
    assert (stopped.iterations, stopped.of) == (1, 1000)


def test_a_catboost_model_whose_inputs_disagree_with_its_feature_step_is_refused(diamonds):
    config, data = diamonds
    model = pipeline(config, data, estimator("catboost", "regression", 7))
    fewer = build_preprocessor(data.spec, dense=True, native_categories=True)
    fewer.set_params(transformers=[t for t in fewer.transformers if t[0] != "categorical"])
    fewer.fit(model_inputs(data.train, data.spec), data.train["price"])
    model.steps[0] = ("features", fewer)
    with pytest.raises(UnsafeModel, match="the CatBoost model takes 9 features; the feature step gives 6"):
        check_trees(model)


def test_a_catboost_champion_with_text_labels_is_registered_loaded_and_answers(tmp_path, monkeypatch, instance):
    import palmerpenguins

    penguins = palmerpenguins.load_penguins()
    penguins.to_csv(tmp_path / "penguins.csv", index=False)
    dataset = {"name": "penguins", "source": {"kind": "file", "path": str(tmp_path / "penguins.csv")}}
    dataset |= {"target": "species", "task": "multiclass_classification"}
    model = {"registered_name": "penguins-model", "candidates": ["catboost"]}
    path = tmp_path / "penguins.yaml"
    path.write_text(yaml.safe_dump({"dataset": dataset, "model": model}))
    monkeypatch.setenv("NEXUS_CONFIG", str(path))
    defs = build_definitions(load_config(path))
    assert materialize(defs, instance, ["raw_data", "features", *TRAINING_CHAIN]).success
    challenger = defs.load_asset_value("challenger_model", instance=instance)
    assert challenger["family"] == "catboost" and challenger["holdout"]["accuracy"] > 0.9
    mlflow = build_resources()["mlflow"]
    mlflow.activate()
    served = load_version(mlflow.client(), "penguins-model", challenger["version"])
    assert served.classes == ["Adelie", "Chinstrap", "Gentoo"], "sorted, as every other family's"
    assert served.info["family"] == "catboost"
    for answer in served.answer(served.example):
        assert answer["prediction"] in served.classes and abs(sum(answer["probabilities"].values()) - 1) < 1e-9
    loaded = registry.load_pipeline(f"models:/penguins-model/{challenger['version']}")
    assert check_trees(loaded) == loaded[-1].tree_count_ > 0
