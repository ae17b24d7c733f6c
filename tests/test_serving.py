"""The BentoML service on a real port: the champion of a real materialization, validated input, a bearer
token, Prometheus metrics, and a swap under load that drops no request and refuses a broken version."""

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml

from nexus_assets.definitions import build_definitions
from nexus_cli.processes import free_port, running, serve_command
from nexus_core import registry
from nexus_core.config import load_config
from nexus_resources.mlflow import MlflowResource
from tests.conftest import SMALL_CONFIG, TRAINING_CHAIN, materialize_window, register_linear_version

TOKEN = "test-token"
NAME = SMALL_CONFIG["model"]["registered_name"]
ROW = {
    "age": 41.0,
    "tenure_months": 12.0,
    "monthly_charges": 70.5,
    "total_charges": None,
    "support_calls": 3.0,
    "usage_gb": 20.0,
    "last_login_days": 4.0,
    "num_products": 2.0,
    "discount_pct": 5.0,
    "satisfaction_score": 6.0,
    "plan": "standard",
    "region": "north",
    "payment_method": "card",
    "contract": "monthly",
    "device": "web",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A champion trained by a real materialization, served by `bentoml serve` on a free loopback port."""
    home = tmp_path_factory.mktemp("serving-home")
    config_path = home / "nexus.yaml"
    config_path.write_text(yaml.safe_dump(SMALL_CONFIG))
    env = {
        "NEXUS_HOME": str(home),
        "NEXUS_CONFIG": str(config_path),
        "NEXUS_MODE": "embedded",
        "BENTOML_HOME": str(home / "bentoml"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        config = load_config()
        defs = build_definitions(config)
        with dg.instance_for_test() as instance:
            materialize_window(defs, instance)
            assert dg.materialize(
                list(defs.assets), selection=TRAINING_CHAIN, instance=instance, resources=defs.resources
            ).success
            data = defs.load_asset_value("training_dataset", instance=instance)
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    mlflow.activate()
    port = free_port()
    command = serve_command(port)
    serving_env = {
        **env,
        "NEXUS_SERVING_TOKEN": TOKEN,
        "NEXUS_SERVING_MAX_RECORDS": "50",
        "NEXUS_SERVING_POLL_SECONDS": "0.5",
    }
    with running(
        command,
        port,
        "/readyz",
        env=serving_env,
        cwd=Path(__file__).resolve().parent.parent,
        log_path=home / "bentoml.log",
    ) as url:
        yield SimpleNamespace(url=url, mlflow=mlflow, config=config, data=data)


def call(url: str, path: str, body: bytes | dict | None = None, token: str | None = TOKEN) -> tuple[int, dict | str]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def test_predict_answers_with_the_champion_and_its_version(served):
    status, body = call(served.url, "/predict", {"records": [ROW, {**ROW, "plan": "premium", "age": None}]})
    assert status == 200, body
    assert body["model"] == {"name": NAME, "version": "1"}
    assert len(body["predictions"]) == 2
    for prediction in body["predictions"]:
        assert prediction["prediction"] in (0, 1)
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-9


def test_a_record_may_carry_its_id_and_the_answer_echoes_it(served):
    status, body = call(served.url, "/predict", {"records": [{"customer_id": 20260107000012, **ROW}, ROW]})
    assert status == 200, body
    assert body["predictions"][0]["id"] == 20260107000012 and "id" not in body["predictions"][1]


def test_model_route_matches_the_registry(served):
    status, info = call(served.url, "/model", token=None)
    client = served.mlflow.client()
    version = client.get_model_version(NAME, "1")
    run = client.get_run(version.run_id)
    assert status == 200
    assert (info["name"], info["version"], info["alias"]) == (NAME, "1", "champion")
    assert info["promoted_at"] == version.tags["nexus.promoted_at"]
    assert info["trained_on"] == "2026-01-01...2026-01-06"
    assert info["holdout_metrics"]["roc_auc"] == run.data.metrics["holdout_roc_auc"]


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {"records": [{k: v for k, v in ROW.items() if k != "age"}]},
            400,
            '"loc":["records",0,"age"],"msg":"Field required"',
        ),
        ({"records": [{**ROW, "shoe_size": 44.0}]}, 400, '"loc":["records",0,"shoe_size"],"msg":"Extra inputs'),
        ({"records": [{**ROW, "customer_id": [1]}]}, 400, '"loc":["records",0,"customer_id","int"]'),
        (
            {"records": [{**ROW, "tenure_months": "long"}]},
            400,
            '"loc":["records",0,"tenure_months"],"msg":"Input should be a valid number',
        ),
        ({"records": [{**ROW, "plan": 3}]}, 400, '"loc":["records",0,"plan"],"msg":"Input should be a valid string'),
        (
            json.dumps({"records": [{**ROW, "usage_gb": float("nan")}]}).encode(),
            400,
            '"loc":["records",0,"usage_gb"],"msg":"Input should be a finite number',
        ),
        (
            json.dumps({"records": [{**ROW, "age": float("inf")}]}).encode(),
            400,
            '"loc":["records",0,"age"],"msg":"Input should be a finite number',
        ),
        ({"records": []}, 400, "records: the list is empty"),
        ({"records": [ROW] * 51}, 413, "51 records exceed the maximum of 50"),
        (b"{not json", 400, "Invalid JSON"),
        (b"", 400, "Invalid JSON"),
        ([ROW], 400, '"msg":"Input should be an object"'),
        ({"records": None}, 400, '"loc":["records"],"msg":"Input should be a valid array"'),
        ({"records": {"age": 3}}, 400, '"loc":["records"]'),
        ({"rows": [ROW]}, 400, '"loc":["records"],"msg":"Field required"'),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(served, body, status, expected):
    got, answer = call(served.url, "/predict", body)
    assert got == status, answer
    assert expected in json.dumps(answer, separators=(",", ":")), answer


def test_openapi_documents_the_request_and_answer_of_predict(served):
    status, spec = call(served.url, "/docs.json", token=None)
    operation = spec["paths"]["/predict"]["post"]
    request = json.dumps(operation["requestBody"])
    answer = json.dumps(operation["responses"]["200"])
    assert status == 200
    assert '"records"' in request
    assert '"predictions"' in answer and '"model"' in answer


def test_token_guards_predict_but_not_health_or_metrics(served):
    assert call(served.url, "/predict", {"records": [ROW]}, token=None)[0] == 401
    assert call(served.url, "/predict", {"records": [ROW]}, token="wrong")[0] == 401
    for path in ("/livez", "/readyz", "/metrics", "/model"):
        assert call(served.url, path, token=None)[0] == 200, path


def test_metrics_count_requests_by_model_version(served):
    call(served.url, "/predict", {"records": [ROW]})
    text = call(served.url, "/metrics", token=None)[1]
    assert 'nexus_predict_requests_total{model_version="1",outcome="ok"}' in text
    assert 'nexus_predict_latency_seconds_bucket{le="0.1",model_version="1"}' in text


def test_swap_under_load_drops_nothing_and_refuses_a_broken_version(served):
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status, body = call(served.url, "/predict", {"records": [ROW]})
            answers.append((status, body["model"]["version"] if status == 200 else body))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        client = served.mlflow.client()
        time.sleep(1)
        better = register_linear_version(served.mlflow, served.config, served.data)
        registry.promote(client, NAME, better)
        moved = time.monotonic()
        while time.monotonic() - moved < 20 and (not answers or answers[-1][1] != better):
            time.sleep(0.1)
        broken = register_linear_version(
            served.mlflow, served.config, served.data, trusted_types=["numpy.dtype", "builtins.eval"]
        )
        registry.promote(client, NAME, broken)
        time.sleep(3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = [a for a in answers if a[0] != 200]
    assert not failures, failures[:3]
    versions = [version for _, version in answers]
    assert versions[0] == "1" and versions[-1] == better, "the service must move to the new champion"
    assert versions.index(better) > 0 and "1" not in versions[versions.index(better) :], "no flip-flop"
    info = call(served.url, "/model", token=None)[1]
    assert info["version"] == better
    assert info["last_swap"]["refused"] == broken and "builtins.eval" in info["last_swap"]["reason"]
