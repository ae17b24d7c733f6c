"""The Kubernetes deployment files are valid: the Dask cluster's manifests against the Kubernetes API's models,
the Dagster instance against Dagster's schemas (K8sRunLauncher, the run queue), and the instance differs from the
production one only in how runs are launched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_k8s import K8sRunLauncher
from kubernetes.client import ApiClient

REPO = Path(__file__).resolve().parent.parent
KUBERNETES = REPO / "deploy" / "kubernetes"
MODELS = {("apps/v1", "Deployment"): "V1Deployment", ("v1", "Service"): "V1Service"}


def _documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _as_model(document: dict):
    """The document read by the Kubernetes client as the API server reads it: a model of its kind."""
    kind = MODELS[(document["apiVersion"], document["kind"])]
    return ApiClient().deserialize(SimpleNamespace(data=json.dumps(document)), kind)


MANIFESTS = sorted(path for path in KUBERNETES.glob("*.yaml") if path.name != "dagster.yaml")  # dagster.yaml: below


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_every_manifest_is_a_valid_kubernetes_object_with_no_unknown_field(path: Path):
    for document in _documents(path):
        model = _as_model(document)
        # A field the models do not know (a typo, a wrong level) is dropped by the client: compare both ways.
        assert ApiClient().sanitize_for_serialization(model) == document, document["metadata"]["name"]
        if document["kind"] == "Deployment":
            labels = document["spec"]["template"]["metadata"]["labels"]
            assert document["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_workers_find_the_scheduler_by_its_service():
    documents = {(d["kind"], d["metadata"]["name"]): d for d in _documents(KUBERNETES / "dask.yaml")}
    service = documents[("Service", "dask-scheduler")]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "comm")
    [worker] = documents[("Deployment", "dask-worker")]["spec"]["template"]["spec"]["containers"]
    assert f"tcp://dask-scheduler:{port}" in worker["command"]
    scheduler = documents[("Deployment", "dask-scheduler")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= scheduler.items()
    assert {"secretRef": {"name": "nexusml-env"}} in worker["envFrom"], "workers read S3 and the app database"


def test_the_kubernetes_instance_validates_and_differs_from_production_only_in_its_launcher(tmp_path: Path):
    shutil.copy(KUBERNETES / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    launcher, coordinator = config["run_launcher"], config["run_coordinator"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    checked = process_config(QueuedRunCoordinator.config_type(), coordinator["config"])
    assert checked.success, checked.errors
    limits = coordinator["config"]["tag_concurrency_limits"]
    assert {"key": "dagster/backfill", "limit": 2} in limits, "a backfill cannot take every run slot"

    production = yaml.safe_load((REPO / "docker" / "dagster.production.yaml").read_text())
    kubernetes = yaml.safe_load((KUBERNETES / "dagster.yaml").read_text())
    assert {k: v for k, v in kubernetes.items() if k != "run_launcher"} == {
        k: v for k, v in production.items() if k != "run_launcher"
    }


def test_each_step_gets_its_own_pod_when_the_environment_asks(write_config, monkeypatch):
    from nexus_defs.definitions import build_definitions

    config = write_config()
    assert build_definitions(config).resolve_job_def("training").executor_def.name == "in_process"
    monkeypatch.setenv("NEXUS_STEP_EXECUTOR", "k8s")
    assert build_definitions(config).resolve_job_def("training").executor_def.name == "k8s"
    monkeypatch.setenv("NEXUS_STEP_EXECUTOR", "pods")
    with pytest.raises(ValueError, match=r"NEXUS_STEP_EXECUTOR.*in_process or k8s"):
        build_definitions(config)
