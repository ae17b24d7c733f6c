"""`training.time_budget_seconds`: boosting and forests stop adding iterations at their deadline and keep what they
learned; a family whose turn comes after the budget is spent is left out and reported; a budget that does not run
out changes nothing."""

from __future__ import annotations

import time

import dagster as dg
import mlflow
import numpy as np

from nexus_assets.training.budget import FIRST_STAGE
from nexus_assets.training.candidates import budgeted, estimator, pipeline
from nexus_cli.runs import materialize
from nexus_core.features import model_inputs
from nexus_defs.definitions import build_definitions

FAMILIES = ("random_forest", "hist_gradient_boosting", "lightgbm")


def test_a_deadline_already_passed_keeps_the_first_stage_and_the_model_still_predicts(diamonds):
    config, data = diamonds
    X = model_inputs(data.holdout, data.spec)
    for family in FAMILIES:
        model, stopped = budgeted(config, data, estimator(family, "regression", 7), time.monotonic())
        total = estimator(family, "regression", 7).get_params()["max_iter" if "hist" in family else "n_estimators"]
        first = 1 if family == "lightgbm" else total // FIRST_STAGE
        assert (stopped.iterations, stopped.of) == (first, total), family
        assert str(stopped) == f"stopped at the time budget after {first} of {total} iterations"
        if family == "lightgbm":
            assert model[-1].booster_.current_iteration() == first
        else:
            assert len(getattr(model[-1], "estimators_", None) or model[-1]._predictors) == first
        predictions = model.predict(X)
        assert np.isfinite(predictions).all() and predictions.std() > 0, f"{family} learned something"


def test_a_budget_that_does_not_run_out_gives_the_model_fitted_in_one_go(diamonds):
    config, data = diamonds
    X = model_inputs(data.holdout, data.spec)
    for family in FAMILIES:
        whole = pipeline(config, data, estimator(family, "regression", 7))
        staged, stopped = budgeted(config, data, estimator(family, "regression", 7), time.monotonic() + 3600)
        assert stopped is None
        np.testing.assert_allclose(staged.predict(X), whole.predict(X), rtol=1e-9, err_msg=family)


def test_a_spent_budget_stops_boosting_early_and_leaves_the_next_family_out(trained, instance, write_config):
    changes = {"training": {"time_budget_seconds": 0.01}, "model": {"candidates": ["hist_gradient_boosting", "linear"]}}
    defs = build_definitions(write_config(changes))
    assert materialize(defs, instance, ["candidate_models", "challenger_model"]).success
    [boosting] = defs.load_asset_value("candidate_models", instance=instance)
    assert boosting.family == "hist_gradient_boosting"
    run = mlflow.get_run(boosting.run_id)
    assert run.data.tags["nexus.time_budget"] == "stopped at the time budget after 5 of 200 iterations"
    assert run.data.params["iterations_fitted"] == "5"
    comparison = instance.get_latest_materialization_event(dg.AssetKey("candidate_models")).asset_materialization
    text = comparison.metadata["comparison"].value
    assert "Stopped early: hist_gradient_boosting stopped at the time budget after 5 of 200 iterations" in text
    assert "Left out, out of time: linear (training.time_budget_seconds=0.01 was spent)" in text
    assert defs.load_asset_value("challenger_model", instance=instance)["family"] == "hist_gradient_boosting"
