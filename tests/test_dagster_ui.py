"""After `nexus demo`, what a person browses in the Dagster UI, read through the webserver's own GraphQL: the named
jobs and the schedule, the sensors' ticks with their reasons, checks with a result per partition, and links out
to MLflow."""

from __future__ import annotations

import json
import os
import urllib.request

from nexus_cli.cli import main as nexus
from nexus_cli.processes import running, venv_bin
from nexus_core.config import REPO_ROOT

LOCATION = """
{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
  ... on PythonError { message }
  ... on RepositoryLocation { repositories {
    jobs { name }
    schedules { name scheduleState { status } }
    sensors { name sensorState { ticks(limit: 100) { status skipReason runIds } } }
  } }
} } } } }
"""
CHECKS = """
{ assetCheckExecutions(assetKey: {path: ["drift_report"]}, checkName: "drift_share", limit: 50) {
  partition evaluation { success } } }
"""
LINKS = """
{ assetOrError(assetKey: {path: ["champion_model"]}) { ... on Asset { assetMaterializations(limit: 1) {
  metadataEntries { label ... on UrlMetadataEntry { url } } } } } }
"""


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def test_after_the_demo_the_ui_shows_jobs_schedule_ticks_checks_per_partition_and_links(
    write_config, tmp_path, monkeypatch
):
    config = write_config()
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("NEXUS_MLFLOW_UI_URL", "http://mlflow.example:5000")
    monkeypatch.setenv("NEXUS_SERVING_TOKEN", "demo-token")  # the demo's own request to the service sends it
    assert nexus(["demo", "--monitor-days", "3"]) == 0

    workspace = str(REPO_ROOT / "workspace.yaml")

    def command(port: int) -> list[str]:
        return [venv_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]

    with running(command, "/server_info", env=dict(os.environ), log_path=tmp_path / "webserver.log") as url:
        [entry] = graphql(url, LOCATION)["workspaceOrError"]["locationEntries"]
        [repository] = entry["locationOrLoadError"]["repositories"]
        checks = graphql(url, CHECKS)["assetCheckExecutions"]
        links = graphql(url, LINKS)["assetOrError"]["assetMaterializations"][0]["metadataEntries"]

    assert {"ingest", "training", "labels", "deploy"} <= {job["name"] for job in repository["jobs"]}
    [schedule] = repository["schedules"]
    assert schedule["name"] == "ingest_schedule" and schedule["scheduleState"]["status"] == "RUNNING"
    ticks = {sensor["name"]: sensor["sensorState"]["ticks"] for sensor in repository["sensors"]}
    deploys = [tick for tick in ticks["champion_alias_sensor"] if tick["status"] == "SUCCESS"]
    assert len(deploys) == 1 and deploys[0]["runIds"], "the demo's deploy is a tick of the sensor, with its run"
    assert any("unchanged" in (tick["skipReason"] or "") for tick in ticks["champion_alias_sensor"])
    assert all(tick["skipReason"] for tick in ticks["retraining_sensor"] if tick["status"] == "SKIPPED")
    assert ticks["late_labels_sensor"], "late labels were looked for after each day"

    assert {check["partition"] for check in checks} == {"2026-01-07", "2026-01-08", "2026-01-09"}
    urls = {entry["label"]: entry.get("url") for entry in links}
    assert urls["champion_version"].startswith("http://mlflow.example:5000/#/models/nexus-churn-test/versions/")
