"""After `nexus demo`, what a person browses in the Dagster UI, read through the webserver's own GraphQL: the named
jobs and the schedule, the sensors' ticks with their reasons, checks with a result per partition, and links out
to MLflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections import Counter

import dagster as dg

from nexus_cli.cli import main as nexus
from nexus_cli.processes import running, venv_bin
from nexus_core.config import REPO_ROOT

LOCATION = """
{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
  ... on PythonError { message }
  ... on RepositoryLocation { repositories {
    jobs { name }
    schedules { name scheduleState { status ticks(limit: 100) { status runIds } } }
    sensors { name sensorState { ticks(limit: 100) { status skipReason runIds } } }
  } }
} } } } }
"""
ARTIFACTS = REPO_ROOT / "test-artifacts"  # screenshots of the pages the browser test opened
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
        follow_a_days_predictions_to_their_model_and_training_set(url)

    assert {"ingest", "training", "labels", "deploy"} <= {job["name"] for job in repository["jobs"]}
    [schedule] = repository["schedules"]
    assert schedule["name"] == "ingest_schedule" and schedule["scheduleState"]["status"] == "RUNNING"
    assert sum(len(tick["runIds"]) for tick in schedule["scheduleState"]["ticks"]) == 3, "a tick per monitored day"
    ticks = {sensor["name"]: sensor["sensorState"]["ticks"] for sensor in repository["sensors"]}
    deploys = [tick for tick in ticks["champion_alias_sensor"] if tick["status"] == "SUCCESS"]
    assert len(deploys) == 1 and deploys[0]["runIds"], "the demo's deploy is a tick of the sensor, with its run"
    assert any("unchanged" in (tick["skipReason"] or "") for tick in ticks["champion_alias_sensor"])
    assert all(tick["skipReason"] for tick in ticks["retraining_sensor"] if tick["status"] == "SKIPPED")
    assert ticks["late_labels_sensor"], "late labels were looked for after each day"

    assert {check["partition"] for check in checks} == {"2026-01-07", "2026-01-08", "2026-01-09"}
    urls = {entry["label"]: entry.get("url") for entry in links}
    assert urls["champion_version"].startswith("http://mlflow.example:5000/#/models/nexus-churn-test/versions/")

    # Past the history and the first training (the demo's own runs), every run was started by the platform: the
    # schedule, the automation or a sensor, with the tick that started it.
    with dg.DagsterInstance.get() as instance:
        runs = list(reversed(instance.get_runs()))
    assert [run.job_name for run in runs[:2]] == ["ingest", "training"]
    started_by = Counter(
        run.tags.get("dagster/schedule_name") or run.tags.get("dagster/sensor_name") for run in runs[2:]
    )
    assert started_by["ingest_schedule"] == 3 and started_by["monitoring_automation"] >= 3, started_by
    assert started_by["champion_alias_sensor"] == 1 and None not in started_by, started_by


def follow_a_days_predictions_to_their_model_and_training_set(url: str) -> None:
    """In a real browser (headless Chromium): a day of batch_predictions links to the model version in MLflow,
    the run that trained it, its training set and gate decision, and the features it read; the training set's page
    opens from that link. Screenshots are kept in test-artifacts/."""
    day = browse(url, "/assets/batch_predictions?view=partitions&partition=2026-01-09", "batch_predictions")
    links = set(re.findall(r'href="([^"]+)"', day.replace("&amp;", "&")))
    assert "http://mlflow.example:5000/#/models/nexus-churn-test/versions/1" in links
    assert "/assets/features?view=partitions&partition=2026-01-09" in links
    assert any(link.startswith("/runs/") and "?" not in link for link in links), "the run that trained it"
    [training_set] = [link for link in links if link.startswith("/assets/training_dataset?view=events&asOf=")]
    assert any(link.startswith("/assets/champion_model?view=events&asOf=") for link in links)
    page = browse(url, training_set, "training_dataset")
    assert "window_hash" in page and "holdout_hash" in page
    browse(url, "/runs", "runs")
    browse(url, "/assets/batch_predictions?view=lineage", "lineage")  # the graph around a day's predictions
    browse(url, "/assets/raw_data?view=overview", "raw_data_freshness")


def browse(url: str, path: str, name: str) -> str:
    """The page as headless Chromium renders it (the DOM once its scripts ran), and its screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    command = [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu"]
    command += ["--virtual-time-budget=20000", "--window-size=1400,1400", f"{url}{path}"]
    subprocess.run([*command[:-1], f"--screenshot={ARTIFACTS / name}.png", command[-1]], check=True, timeout=180)
    return subprocess.run(
        [*command[:-1], "--dump-dom", command[-1]], check=True, timeout=180, capture_output=True, text=True
    ).stdout


def test_a_kept_mlflow_link_opens_on_the_mlflow_ui_as_configured_now(monkeypatch, capsys):
    """Links in past materializations name the MLflow UI of their day; `nexus open` moves them to today's, which can
    be a path behind the same proxy as the Dagster UI so that links never name a host."""
    old = "http://127.0.0.1:5000/#/models/nexus-churn/versions/3"
    for base, expected in [
        ("https://mlflow.internal/", "https://mlflow.internal/#/models/nexus-churn/versions/3"),
        ("/mlflow", "/mlflow/#/models/nexus-churn/versions/3"),
    ]:
        monkeypatch.setenv("NEXUS_MLFLOW_UI_URL", base)
        assert nexus(["open", old]) == 0 and capsys.readouterr().out.strip() == expected
    assert nexus(["open", "models:/nexus churn/4"]) == 0
    assert capsys.readouterr().out.strip() == "/mlflow/#/models/nexus%20churn/versions/4"
    assert nexus(["open", "http://127.0.0.1:3000/runs/abc"]) == 2
    assert "is not an MLflow link: give one from Dagster's metadata" in capsys.readouterr().err
