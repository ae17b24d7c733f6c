"""Many datasets in one deployment (`NEXUS_DEFS`): the synthetic demo and two real public tables, each under its
own key prefix and group with its own jobs and sensors; each trains, is promoted and is served on its own, and a
new partition or a promotion of one runs nothing of the others."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from nexus_cli.cli import main as nexus
from nexus_cli.processes import running, venv_bin
from nexus_cli.runs import run_job
from nexus_core import registry
from nexus_core.config import ConfigError
from nexus_defs.component import NexusDataset, NexusDatasetScaffolder, ScaffoldParams
from nexus_defs.definitions import build_deployment
from nexus_resources.app_db import WHOLE_TABLE
from nexus_resources.modes import build_resources
from tests.conftest import SMALL_CONFIG, merge

REPO = Path(__file__).resolve().parent.parent
DATASETS = ["churn", "penguins", "tumours"]
DAYS = [f"2026-01-{day:02d}" for day in range(1, 7)]
TYPE = "nexus_defs.component.NexusDataset"
MONITORING = ["batch_predictions", "drift_report", "ground_truth", "model_performance"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment's folder: the synthetic churn config, and two real tables' configs written by `nexus new`."""
    import palmerpenguins
    from sklearn.datasets import load_breast_cancer

    folder = tmp_path / "datasets"
    folder.mkdir()
    churn = merge(copy.deepcopy(SMALL_CONFIG), {"dataset": {"end_date": "2026-01-08"}})
    (folder / "churn.yaml").write_text(yaml.safe_dump(churn, sort_keys=False))
    penguins = palmerpenguins.load_penguins()
    penguins.assign(penguin_id=np.arange(1, len(penguins) + 1)).to_csv(tmp_path / "penguins.csv", index=False)
    tumours = load_breast_cancer(as_frame=True).frame
    tumours.assign(malignant=1 - tumours.pop("target")).to_csv(tmp_path / "tumours.csv", index=False)
    for name, target in (("penguins", "species"), ("tumours", "malignant")):
        data = str(tmp_path / f"{name}.csv")
        assert nexus(["new", name, "--data", data, "--target", target, "--folder", str(folder)]) == 0
    monkeypatch.setenv("NEXUS_DEFS", str(folder))
    return folder


def test_nexus_new_writes_a_config_with_the_roles_it_inferred(folder):
    text = (folder / "penguins.yaml").read_text()
    assert "task: multiclass_classification  # 3 distinct values" in text
    assert "id_column: penguin_id  # distinct in every row" in text
    assert "#   categorical: island, sex" in text
    assert nexus(["new", "penguins", "--data", str(folder.parent / "penguins.csv"), "--target", "nope"]) == 2


def test_each_dataset_is_a_group_with_its_own_keys_jobs_schedule_and_sensors(folder):
    from nexus_defs.definitions import defs

    repository = defs().get_repository_def()  # what `dagster dev` loads with NEXUS_DEFS set
    graph = repository.asset_graph
    groups = {key.path[0]: graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {name: name for name in DATASETS}
    assert dg.AssetKey(["churn", "features"]) in graph.get(dg.AssetKey(["churn", "drift_report"])).parent_keys
    for name in DATASETS:
        training = repository.get_job(f"{name}__training")
        assert {key.path[0] for key in training.asset_layer.executable_asset_keys} == {name}
        assert repository.get_sensor_def(f"{name}__champion_alias_sensor").job_name == f"{name}__deploy"
        assert repository.get_sensor_def(f"{name}__retraining_sensor").job_name == f"{name}__training"
        automation = repository.get_sensor_def(f"{name}__monitoring_automation")
        assert {key.path[0] for key in automation.asset_selection.resolve(graph)} == {name}
    assert [schedule.name for schedule in repository.schedule_defs] == ["churn__ingest_schedule"]


def test_dagsters_own_tools_list_each_dataset_and_scaffold_a_new_one(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("PATH", f"{Path(venv_bin('dg')).parent}:{os.environ['PATH']}")
    listed = subprocess.run([venv_bin("dg"), "list", "defs", "--json"], cwd=REPO, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr[-2000:]
    groups = {asset["asset_key"]: asset["group_name"] for asset in json.loads(listed.stdout)["assets"]}
    assert groups["tumours/champion_model"] == "tumours" and groups["penguins/raw_data"] == "penguins"

    # what `dg scaffold defs nexus_defs.component.NexusDataset orders --data ... --target ...` runs
    target = tmp_path / "defs" / "orders"
    target.mkdir(parents=True)
    params = ScaffoldParams(data=str(folder.parent / "tumours.csv"), target="malignant")
    NexusDatasetScaffolder().scaffold(dg.ScaffoldRequest(TYPE, target, "yaml", REPO, params))
    declared = yaml.safe_load((target / "defs.yaml").read_text())
    assert declared == {"type": TYPE, "attributes": {"config": "nexus.yaml"}}
    config = NexusDataset(**declared["attributes"]).dataset(target)
    assert (config.dataset.name, config.dataset.task, config.prefix) == ("orders", "binary_classification", ["orders"])


def test_two_configs_claiming_one_dataset_name_fail_naming_both_files(folder):
    (folder / "penguins-copy.yaml").write_text((folder / "penguins.yaml").read_text())
    with pytest.raises(ConfigError, match=r"penguins.yaml: dataset.name 'penguins' is already used by .*penguins-copy"):
        build_deployment(folder)


def test_each_trains_promotes_deploys_monitors_and_serves_alone(folder, instance):
    defs = build_deployment(folder)
    for name, keys in (("churn", DAYS), ("penguins", [None]), ("tumours", [None])):
        assert run_job(defs, instance, f"{name}__ingest", keys=keys).success, name
        assert run_job(defs, instance, f"{name}__training").success, name
    client = build_resources()["mlflow"].client()
    for name in DATASETS:
        assert registry.aliases(client, f"{name}-model" if name != "churn" else "nexus-churn-test").get("champion")

    # Each champion alias sensor deploys its own model through its own job, once.
    repository = defs.get_repository_def()
    for name in DATASETS:
        sensor = repository.get_sensor_def(f"{name}__champion_alias_sensor")
        result = sensor.evaluate_tick(_tick(defs, instance))
        assert [request.job_name or sensor.job_name for request in result.run_requests] == [f"{name}__deploy"]
        assert not sensor.evaluate_tick(_tick(defs, instance, result.cursor)).run_requests, "a move deploys once"

    # A new day of churn (the newest of its range: the one `eager()` follows) plans churn's monitoring alone.
    planned = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert run_job(defs, instance, "churn__ingest", "2026-01-07").success
    planned = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=planned.cursor)
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    requested = {key.to_user_string(): planned.get_requested_partitions(key) for key in keys}
    assert {key.split("/")[0] for key, partitions in requested.items() if partitions} == {"churn"}, requested
    assert requested["churn/batch_predictions"] == {"2026-01-07"}

    # A table without partitions is scored and monitored whole, each run replacing the last ("Materialize all").
    monitoring = [dg.AssetKey(["penguins", name]) for name in MONITORING]
    for _ in range(2):
        assert dg.materialize(defs.assets, selection=monitoring, resources=defs.resources, instance=instance).success
    app_db = build_resources()["app_db"]
    stored = app_db.predictions_for("penguins-model", None)
    assert len(stored) == 344 and stored["id"].is_unique and set(stored["partition"]) == {WHOLE_TABLE}
    (health,) = app_db.health("penguins-model").to_dict("records")
    assert health["partition"] == WHOLE_TABLE and health["predictions"] == 344 and health["labelled_rows"] == 344
    assert health["drifted"] is not None and health["metric_value"] > 0.9, health

    # One service per model, both answering at once.
    for name in ("churn", "penguins"):
        assert run_job(defs, instance, f"{name}__deploy").success, name
    churn_day = defs.load_asset_value(["churn", "features"], instance=instance, partition_key="2026-01-07")
    rows = [
        churn_day.drop(columns=["churned", "event_time"]).head(1),
        pd.read_csv(folder.parent / "penguins.csv").drop(columns="species").head(1),
    ]
    with _service("churn") as churn_url, _service("penguins") as penguins_url, ThreadPoolExecutor(2) as pool:
        churn, penguins = pool.map(_predict, (churn_url, penguins_url), rows)
    assert churn["model"]["name"] == "nexus-churn-test" and churn["predictions"][0]["prediction"] in (0, 1)
    assert penguins["model"]["name"] == "penguins-model"
    assert penguins["predictions"][0]["prediction"] in {"Adelie", "Chinstrap", "Gentoo"}


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None):
    repository = defs.get_repository_def()
    return dg.build_sensor_context(
        instance=instance, repository_def=repository, resources=defs.resources, cursor=cursor
    )


def _service(model: str):
    return running(
        lambda port: [venv_bin("nexus"), "serve", "--model", model, "--port", str(port)], "/readyz", cwd=REPO
    )


def _predict(url: str, rows: pd.DataFrame) -> dict:
    records = json.loads(rows.to_json(orient="records"))
    request = urllib.request.Request(
        f"{url}/predict", data=json.dumps({"records": records}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)
