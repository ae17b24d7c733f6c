"""The production stack as processes (docker-compose.yml without Docker): the loop runs through dagster-daemon,
its promotion reaches a webhook through the alert rules and Alertmanager, the Blackbox probes see the service, the
logs are JSON with run ids and versions, and the stack survives an MLflow restart, an S3 outage and a daemon
restart."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import dagster as dg
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from nexus_cli.stack import LOCATION, LocalStack
from nexus_core import registry
from nexus_resources.modes import build_resources
from tests.conftest import PG_ADMIN_URL, SMALL_CONFIG, TRAINING_CHAIN, _require_postgres
from tests.test_serving import ROW

NAME = SMALL_CONFIG["model"]["registered_name"]
DAYS = ("2026-01-01", "2026-01-02", "2026-01-03")
TOKEN = "stack-test-token"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
DEPLOYS = dg.RunsFilter(tags={"nexus/trigger": "champion_alias_sensor"})


class Driver:
    """What a person does through the webserver (GraphQL), and what they read back from the stack."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.graphql = DagsterGraphQLClient("127.0.0.1", port_number=stack.ports["webserver"], timeout=60)
        self.instance = dg.DagsterInstance.from_config(str(stack.dagster_home))

    def launch(self, selection: list[str], partition: str | None = None, tags: dict | None = None) -> str:
        tags = {**(tags or {}), **({"dagster/partition": partition} if partition else {})}
        return self.graphql.submit_job_execution(
            "__ASSET_JOB",
            repository_location_name=LOCATION,
            repository_name="__repository__",
            asset_selection=selection,
            tags=tags,
        )

    def wait(self, run_id: str, timeout: float = 300) -> dg.DagsterRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run.status in TERMINAL:
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} still {run.status} after {timeout} s")

    def step_started(self, run_id: str, step: str) -> bool:
        events = self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        return any(event.step_key == step for event in events)

    def retries_of(self, run_id: str) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/root_run_id": run_id})))

    def deploys(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=DEPLOYS))

    def served(self) -> dict:
        with urllib.request.urlopen(f"{self.stack.url('serving')}/model", timeout=5) as response:
            return json.load(response)

    def predict(self, records: list[dict]) -> dict:
        request = urllib.request.Request(
            f"{self.stack.url('serving')}/predict",
            data=json.dumps({"records": records}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def prometheus(self, query: str) -> list[dict]:
        url = f"{self.stack.url('prometheus')}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]["result"]

    def eventually(self, what: str, check, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := check():
                return value
            time.sleep(1)
        raise AssertionError(f"{what} did not happen within {timeout} s")


class Webhook(ThreadingHTTPServer):
    """A local receiver of Alertmanager's webhook: the alerts it posted, newest last."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.alerts.extend(body["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/alerts"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.shutdown()


@pytest.fixture(scope="module")
def driver(tmp_path_factory, webhook) -> Iterator[Driver]:
    _require_postgres()
    folder = tmp_path_factory.mktemp("stack")
    config = folder / "nexus.yaml"
    # the data work on the stack's Dask cluster, as a deployment past one machine has it
    dask = {"compute": {"engine": "dask", "scheduler": "${NEXUS_DASK_SCHEDULER}"}}
    config.write_text(yaml.safe_dump({**SMALL_CONFIG, **dask}, sort_keys=False))
    stack = LocalStack(folder, PG_ADMIN_URL, config, serving_token=TOKEN, alert_webhook_url=webhook.url)
    with stack, pytest.MonkeyPatch.context() as mp:
        for key, value in stack.env.items():
            mp.setenv(key, value)
        driver = Driver(stack)
        try:
            yield driver
        finally:
            driver.instance.dispose()


@pytest.fixture(scope="module")
def mlflow_client(driver):
    resource = build_resources()["mlflow"].process_config_and_initialize()
    resource.activate()
    return resource.client()


def test_the_loop_runs_through_the_daemon_and_the_service_answers_with_the_champion(driver, mlflow_client):
    ingests = [driver.launch(["raw_data", "features"], day) for day in DAYS]  # queued; the daemon runs them
    for run in map(driver.wait, ingests):
        assert run.status == dg.DagsterRunStatus.SUCCESS, f"ingest {run.tags['dagster/partition']} failed"
    assert driver.wait(driver.launch(TRAINING_CHAIN)).status == dg.DagsterRunStatus.SUCCESS
    assert registry.aliases(mlflow_client, NAME)["champion"] == "1"

    # champion_alias_sensor, ticking in the daemon, requests the deploy; the service swaps to the new version.
    deploy = driver.eventually("a deploy run", driver.deploys)[0]
    assert driver.wait(deploy.run_id).status == dg.DagsterRunStatus.SUCCESS
    assert deploy.tags["nexus/model_version"] == "1"
    assert driver.served()["version"] == "1"
    answer = driver.predict([ROW, ROW])
    assert answer["model"] == {"name": NAME, "version": "1"} and len(answer["predictions"]) == 2


def test_prometheus_scrapes_the_service_and_the_platform_metrics(driver):
    run = driver.wait(
        driver.launch(["batch_predictions", "drift_report", "ground_truth", "model_performance"], DAYS[-1])
    )
    assert run.status == dg.DagsterRunStatus.SUCCESS
    tasks = {"feature_partition", "score_partition", "current_sample", "partition_labels", "judge_partition"}
    assert tasks <= _dask_tasks_done(driver.stack)
    served = driver.eventually(
        "the service's request counter in Prometheus",
        lambda: driver.prometheus('nexus_predict_requests_total{model_version="1",outcome="ok"}'),
    )
    assert float(served[0]["value"][1]) >= 1
    champion = driver.prometheus(f'max(nexus_served_model_version{{registered_model="{NAME}"}})')
    assert float(champion[0]["value"][1]) == 1
    app_db, day = build_resources()["app_db"], SMALL_CONFIG["dataset"]["source"]["rows_per_day"]

    def as_stored() -> list | None:  # the daemon's automation may score more days meanwhile
        exported = driver.prometheus(f'nexus_predictions{{registered_model="{NAME}",model_version="1"}}')
        stored = app_db.health(NAME, "1")["predictions"].fillna(0).sum()
        return exported if exported and float(exported[0]["value"][1]) == stored else None

    scored = driver.eventually("the exporter's prediction count in Prometheus, as the app database holds it", as_stored)
    assert float(scored[0]["value"][1]) in {day, 2 * day, 3 * day}, "each scored day once"


def _dask_tasks_done(stack: LocalStack) -> set[str]:
    """The prefixes of the tasks the stack's Dask workers have finished (the scheduler's own metrics)."""
    return {
        sample.labels["task_prefix_name"]
        for family in stack.dask_metrics()
        if family.name == "dask_scheduler_prefix_state_totals"
        for sample in family.samples
        if sample.labels.get("state") == "memory" and sample.value > 0
    }


def test_a_restarted_daemon_does_not_deploy_the_same_move_twice(driver):
    assert len(driver.deploys()) == 1
    restarted = time.time()
    driver.stack.servers["daemon"].restart()
    driver.eventually(
        "a sensor tick after the restart",
        lambda: any(tick.timestamp > restarted for tick in _sensor_ticks(driver)),
        timeout=90,
    )
    assert len(driver.deploys()) == 1


def test_a_training_run_outlives_an_mlflow_restart_without_duplicate_versions(driver, mlflow_client):
    before = {v.version for v in mlflow_client.search_model_versions(f"name = '{NAME}'")}
    run_id = driver.launch(TRAINING_CHAIN)
    # Restart while candidate_models is logging its runs to MLflow.
    driver.eventually("candidate_models to start", lambda: driver.step_started(run_id, "candidate_models"), 300)
    driver.stack.servers["mlflow"].restart()
    finished = [driver.wait(run_id, timeout=600)] + [driver.wait(r.run_id, 600) for r in driver.retries_of(run_id)]
    assert finished[-1].status == dg.DagsterRunStatus.SUCCESS, [r.status for r in finished]
    after = {v.version for v in mlflow_client.search_model_versions(f"name = '{NAME}'")}
    assert len(after - before) == 1, f"one training chain must register one version, got {sorted(after - before)}"


def test_an_s3_outage_fails_the_run_clearly_and_the_retry_succeeds(driver):
    day = "2026-01-04"
    # S3 goes down before the launch: a run of one asset in one process can finish before a test sees it start.
    driver.stack.s3.close()
    try:
        run_id = driver.launch(["raw_data"], day)
        failed = driver.wait(run_id)
    finally:
        driver.stack.s3.open()
    assert failed.status == dg.DagsterRunStatus.FAILURE
    failure = driver.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)[0]
    error = str(failure.dagster_event.step_failure_data.error)
    assert "AWS Error NETWORK_CONNECTION" in error and "Could not connect to server" in error
    assert not driver.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)

    tags = driver.instance.get_run_by_id(run_id).tags
    retry_tags = {key: value for key, value in tags.items() if "retr" in key}
    what = f"the daemon's retry (the failed run's retry tags: {retry_tags})"
    retry = driver.eventually(what, lambda: driver.retries_of(run_id), timeout=180)[0]
    assert driver.wait(retry.run_id).status == dg.DagsterRunStatus.SUCCESS
    assert day in driver.instance.get_materialized_partitions(dg.AssetKey("raw_data"))
    s3 = boto3.client("s3", endpoint_url=driver.stack.url("s3"), region_name="us-east-1")
    assert s3.head_object(Bucket="nexus", Key=f"nexus/raw_data/{day}")["ContentLength"] > 0


def test_the_promotion_alerts_the_webhook_the_probes_pass_and_the_logs_are_json(driver, webhook):
    """Last in the module, so Alertmanager's wait for news (one minute for info alerts) has long passed."""
    promoted = driver.eventually(
        "NexusChampionPromoted at the webhook",
        lambda: [a for a in webhook.alerts if a["labels"]["alertname"] == "NexusChampionPromoted"],
        timeout=180,
    )
    assert promoted[0]["labels"]["registered_model"] == NAME and promoted[0]["labels"]["severity"] == "info"
    assert promoted[0]["annotations"]["summary"].startswith(f"{NAME}: v1 is champion")
    for probe in ("nexus-probe-ready", "nexus-probe-predict"):  # the prober's POST /predict carries the token
        answer = driver.eventually(probe, lambda p=probe: driver.prometheus(f'probe_success{{job="{p}"}} == 1'))
        assert answer[0]["metric"]["instance"].startswith(driver.stack.url("serving"))
    assert not [a for a in webhook.alerts if a["labels"]["severity"] == "critical" and a["status"] == "firing"]

    served = _json_lines(driver.stack.folder / "serving.log")
    swap = next(line for line in served if line["message"].startswith("now serving version 1"))
    assert swap["service"] == "serving" and swap["model_version"] == "1" and swap["registered_model"] == NAME
    deploy = driver.deploys()[0]
    run_lines = [line for line in _json_lines(driver.stack.folder / "user-code.log") if line.get("run_id")]
    assert any(line["run_id"] == deploy.run_id and line["service"] == "dagster-run" for line in run_lines)
    assert {line.get("event") for line in run_lines if line["run_id"] == deploy.run_id} >= {
        "STEP_START",
        "STEP_SUCCESS",
    }


def _json_lines(path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
    return lines


def _sensor_ticks(driver: Driver) -> list:
    origin = next(
        state for state in driver.instance.all_instigator_state() if state.instigator_name == "champion_alias_sensor"
    )
    return driver.instance.get_ticks(origin.instigator_origin_id, origin.selector_id, limit=5)
