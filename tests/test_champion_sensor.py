"""champion_alias_sensor asks for one deploy per move of `champion`; serving_bento checks, imports and builds."""

import json
from pathlib import Path

import bentoml
import dagster as dg
import pytest

from nexus_core import registry
from nexus_defs.definitions import build_definitions
from nexus_resources.modes import build_resources
from nexus_sensors.champion import NOTHING_TRAINED
from tests.conftest import register_version

NAME = "nexus-churn-test"


def _tick(defs, instance, mlflow, cursor=None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("champion_alias_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mlflow": mlflow})
    return sensor(context)


def test_one_run_per_champion_move_and_the_cursor_survives(trained, instance):
    defs, mlflow = trained.defs, trained.mlflow
    first = _tick(defs, instance, mlflow)
    [request] = first.run_requests
    assert request.run_config["ops"]["serving_bento"]["config"]["version"] == "1"
    assert request.tags["nexus/model_version"] == "1"
    assert [e.asset_key for e in first.asset_events] == [dg.AssetKey("registered_model")]

    again = _tick(defs, instance, mlflow, cursor=first.cursor)  # a new context, e.g. after a daemon restart
    assert not again.run_requests and again.skip_reason

    second = register_version(mlflow, trained.config, trained.data)
    mlflow.client().set_registered_model_alias(NAME, registry.CHALLENGER, second)
    only_challenger = _tick(defs, instance, mlflow, cursor=first.cursor)
    assert not only_challenger.run_requests and only_challenger.asset_events

    registry.promote(mlflow.client(), NAME, second)  # as `nexus promote` or a person in the MLflow UI would
    moved = _tick(defs, instance, mlflow, cursor=only_challenger.cursor)
    [deploy] = moved.run_requests
    assert deploy.run_config["ops"]["serving_bento"]["config"]["version"] == second
    assert deploy.run_key != request.run_key
    assert not _tick(defs, instance, mlflow, cursor=moved.cursor).run_requests


def test_serving_bento_builds_a_bento_tagged_with_the_version_and_a_new_daemon_does_not_redeploy_it(trained, instance):
    defs = trained.defs
    result = dg.materialize(list(defs.assets), selection=["serving_bento"], instance=instance, resources=defs.resources)
    assert result.success
    metadata = instance.get_latest_materialization_event(dg.AssetKey("serving_bento")).asset_materialization.metadata
    assert metadata["bento"].value == "nexus-model:v1"
    assert metadata["bentoml_model"].value == f"{NAME}:v1"
    assert "| version | 1 |" in metadata["model_info"].value
    source = Path(bentoml.bentos.get("nexus-model:v1").path) / "src"
    packaged = {p.relative_to(source).parts[0] for p in source.rglob("*")}
    assert {"serving", "nexus_core", "nexus.yaml"} <= packaged
    assert not packaged & {"nexus_assets", "nexus_resources", "nexus_cli"}, "the service needs only the core"
    assert not packaged & {".nexus", ".venv", ".git", "tests"}, "the Bento must hold code, not stores or the venv"
    fresh = _tick(defs, instance, trained.mlflow)  # a new daemon, no cursor: version 1 is deployed already
    assert not fresh.run_requests and fresh.cursor


def test_serving_bento_refuses_a_version_that_cannot_load(trained, instance):
    defs = trained.defs
    broken = register_version(
        trained.mlflow, trained.config, trained.data, trusted_types=[*registry.TRUSTED_TYPES["linear"], "builtins.eval"]
    )
    result = dg.materialize(
        list(defs.assets),
        selection=["serving_bento"],
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
        run_config={"ops": {"serving_bento": {"config": {"version": broken}}}},
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert f"version {broken} of {NAME} cannot serve" in message and "builtins.eval" in message


def test_before_any_training_the_sensors_skip_saying_so_and_a_lost_store_is_an_error(write_config, instance):
    config = write_config({"model": {"gate": {"min_shadow_rows": 50}}})  # with the shadow gate's sensor
    defs, mlflow = build_definitions(config), build_resources()["mlflow"]
    skips = {  # `make dev` on a new home: no tracking store yet
        "retraining_sensor": "nexus-churn-test has no champion yet",
        "shadow_gate_sensor": "no challenger of nexus-churn-test waits for its shadow record",
    }
    for sensor, reason in skips.items():
        context = dg.build_sensor_context(instance=instance, resources=build_resources())
        assert defs.resolve_sensor_def(sensor)(context).skip_reason.skip_message == reason
    fresh = _tick(defs, instance, mlflow)
    assert not fresh.run_requests and fresh.skip_reason.skip_message == NOTHING_TRAINED
    deployed = json.dumps({"aliases": {registry.CHAMPION: "1"}, "deploys": 1})
    with pytest.raises(dg.Failure, match="cannot read the aliases of nexus-churn-test: the tracking store"):
        _tick(defs, instance, mlflow, cursor=deployed)
