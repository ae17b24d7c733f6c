"""The BentoML service on a real port: the champion of a real materialization, validated input in one error
shape, limits before work, a poison client that fails only itself, a live OpenAPI contract checked by
schemathesis, Prometheus metrics, a swap under load that drops no request, and refusals (crafted trees for good,
storage outages until they end)."""

import asyncio
import dataclasses
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
from prometheus_client.parser import text_string_to_metric_families

from nexus_cli.processes import running, serve_command
from nexus_core import registry, shadow_predictions
from nexus_core.config import load_config
from nexus_core.ensemble import ENSEMBLE, members
from nexus_core.features import model_inputs
from nexus_defs.definitions import build_definitions
from nexus_resources.mlflow import MlflowResource
from nexus_resources.modes import build_resources
from serving.batcher import MicroBatcher, UnscorableRecord
from serving.model import fast_model, load_version
from tests.conftest import SMALL_CONFIG, TRAINING_CHAIN, embedded_instance, materialize_window, register_version

TOKEN = "test-token"
REPO = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 100_000
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
        with embedded_instance() as instance:
            materialize_window(defs, instance)
            assert dg.materialize(
                list(defs.assets), selection=TRAINING_CHAIN, instance=instance, resources=defs.resources
            ).success
            data = defs.load_asset_value("training_dataset", instance=instance)
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    mlflow.activate()
    serving_env = {
        **env,
        "NEXUS_SERVING_TOKEN": TOKEN,
        "NEXUS_SERVING_MAX_RECORDS": "50",
        "NEXUS_SERVING_POLL_SECONDS": "0.5",
        "NEXUS_SERVING_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "NEXUS_SERVING_READ_SECONDS": "1",
        "NEXUS_SERVING_SHADOW_SHARE": "1",  # every request, once a challenger differs from the champion
    }
    log = home / "bentoml.log"
    with running(
        serve_command, "/readyz", env=serving_env, cwd=Path(__file__).resolve().parent.parent, log_path=log
    ) as url:
        yield SimpleNamespace(url=url, mlflow=mlflow, config=config, data=data, log=log, env=env, defs=defs)


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
    threshold = float(run.data.params["decision_threshold"])
    assert info["decision_threshold"] == {"positive_class": 1, "from": threshold, "objective": "f1"}


def test_predictions_apply_the_versions_decision_threshold(served):
    status, info = call(served.url, "/model", token=None)
    threshold = info["decision_threshold"]["from"]
    holdout = served.data.holdout[list(ROW)].head(50)
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in holdout.to_dict("records")]
    status, body = call(served.url, "/predict", {"records": records})
    assert status == 200, body
    positive = [p["probabilities"]["1"] for p in body["predictions"]]
    assert [p["prediction"] for p in body["predictions"]] == [int(p >= threshold) for p in positive]
    assert any(threshold <= p < 0.5 for p in positive), "no record tells the threshold from the likelier class"


@pytest.mark.parametrize(
    ("body", "status", "location", "expected"),
    [
        ({"records": [{k: v for k, v in ROW.items() if k != "age"}]}, 400, "records[0].age", "Field required"),
        ({"records": [ROW, {**ROW, "shoe_size": 44.0}]}, 400, "records[1].shoe_size", "Extra inputs"),
        ({"records": [{**ROW, "customer_id": [1]}]}, 400, "records[0].customer_id", "valid integer"),
        ({"records": [{**ROW, "tenure_months": "long"}]}, 400, "records[0].tenure_months", "valid number"),
        ({"records": [{**ROW, "plan": 3}]}, 400, "records[0].plan", "valid string"),
        (json.dumps({"records": [{**ROW, "usage_gb": float("nan")}]}).encode(), 400, "records[0].usage_gb", "finite"),
        (json.dumps({"records": [{**ROW, "age": float("inf")}]}).encode(), 400, "records[0].age", "finite"),
        ({"records": [{**ROW, "age": 1e40}]}, 400, "records[0].age", "at most"),  # finite, but not as float32
        ({"records": [{**ROW, "usage_gb": -1e39}]}, 400, "records[0].usage_gb", "at least"),
        ({"records": []}, 400, "records", "at least 1 item"),
        ({"records": [ROW] * 51}, 413, "records", "more than 50 records"),
        (b"{not json", 400, "body", "Invalid JSON"),
        (b"", 400, "body", "Invalid JSON"),
        ([ROW], 400, "body", "should be an object"),
        ({"records": None}, 400, "records", "valid array"),
        ({"records": {"age": 3}}, 400, "records", "valid array"),
        ({"rows": [ROW]}, 400, "records", "Field required"),
    ],
)
def test_bad_requests_get_a_4xx_in_one_shape_naming_the_problem(served, body, status, location, expected):
    got, answer = call(served.url, "/predict", body)
    assert got == status, answer
    assert set(answer) == {"status", "message", "location", "errors"}, answer
    assert (answer["status"], answer["location"]) == (status, location), answer
    assert answer["message"].startswith(location) and expected in answer["message"], answer
    assert answer["errors"][0]["location"] == location, answer


def raw(url: str, head: str, body: bytes = b"", wait: float = 0) -> tuple[int, dict, float]:
    """Send `head` (and `body`, then `wait` seconds of silence) on a plain socket: the status, the answer and how
    long it took, for requests an HTTP client would not send (a body announced but never sent, a stalled one)."""
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        time.sleep(wait)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    elapsed = time.monotonic() - started
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1]), elapsed


def test_limits_apply_before_the_body_is_read(served):
    body = json.dumps({"records": [ROW]}).encode()
    head = "POST /predict HTTP/1.1\nHost: x\nContent-Type: application/json\n"
    # The token is checked before a byte of the body arrives: the announced megabyte is never sent.
    status, answer, took = raw(served.url, head + "Content-Length: 1000000\n")
    assert (status, answer["location"]) == (401, "Authorization") and took < 5
    status, answer, took = raw(served.url, head + f"Authorization: Bearer {TOKEN}\nContent-Length: 200000000\n")
    assert (status, answer["location"]) == (413, "body") and "NEXUS_SERVING_MAX_BODY_BYTES" in answer["message"]
    assert took < 5
    chunked = head + f"Authorization: Bearer {TOKEN}\nTransfer-Encoding: chunked\n"
    chunk = b"%x\r\n%s\r\n" % (60_000, b" " * 60_000)
    status, answer, _ = raw(served.url, chunked, chunk * 2 + b"0\r\n\r\n")  # no length announced, over the limit
    assert status == 413 and f"limit of {MAX_BODY_BYTES}" in answer["message"]
    started = f"Authorization: Bearer {TOKEN}\nContent-Length: {len(body)}\n"
    status, answer, took = raw(served.url, head + started, body[:10], wait=0)  # a client that stalls
    assert status == 408 and 0.9 < took < 5, (status, took)
    lower = f"authorization: bearer {TOKEN}\nContent-Length: {len(body)}\n"
    assert raw(served.url, head + lower, body)[0] == 200  # header names and the scheme are case-insensitive
    not_json = f"POST /predict HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\nContent-Length: {len(body)}\n"
    status, answer, _ = raw(served.url, not_json + "Content-Type: text/plain\n", body)
    assert (status, answer["location"]) == (415, "Content-Type")
    assert call(served.url, "/predict", {"records": [ROW]}, token="wrong")[0] == 401
    assert call(served.url, "/predict", {"records": [ROW]}, token=TOKEN + "x")[0] == 401


def test_refused_requests_are_logged_as_one_line_without_their_body(served):
    call(served.url, "/predict", {"records": [{**ROW, "secret_field": "s3cr3t-value"}]})
    time.sleep(0.5)
    log = served.log.read_text()
    assert "POST /predict 400: records[0].secret_field: Extra inputs are not permitted" in log
    assert "s3cr3t-value" not in log and "Traceback" not in log


def test_a_poison_client_fails_only_its_own_requests(served):
    """The issue's probe: a finite number too large for the forest's float32 beside concurrent good clients."""
    answers: dict[str, list[int]] = {"good": [], "poison": []}

    def client(kind: str, record: dict) -> None:
        for _ in range(40):
            answers[kind].append(call(served.url, "/predict", {"records": [ROW, record]})[0])

    threads = [threading.Thread(target=client, args=("good", ROW)) for _ in range(4)]
    threads.append(threading.Thread(target=client, args=("poison", {**ROW, "age": 1e40})))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers["good"] == [200] * 160
    assert answers["poison"] == [400] * 40


def test_a_batch_that_fails_is_split_so_only_the_offending_request_fails(served):
    """Past validation (here bypassed), a record the model cannot take fails its own request with its index; a
    model that fails even its own example fails every request as a server fault."""
    from nexus_assets.training.candidates import estimator, pipeline

    client = served.mlflow.client()
    model = load_version(client, NAME, registry.aliases(client, NAME)["champion"])
    forest = pipeline(served.config, served.data, estimator("random_forest", "binary_classification", 7))
    model = dataclasses.replace(model, pipeline=forest)
    model.fast = fast_model(model)
    poison = [ROW, ROW, {**ROW, "age": "forty"}, ROW]

    async def send(current) -> list:
        batcher = MicroBatcher(lambda: current)
        requests = [[ROW]] * 3 + [poison] + [[ROW, ROW]] * 3
        return await asyncio.gather(*(batcher.predict(r) for r in requests), return_exceptions=True)

    answers = asyncio.run(send(model))
    failed = [a for a in answers if isinstance(a, Exception)]
    assert len(failed) == 1 and isinstance(answers[3], UnscorableRecord) and answers[3].index == 2
    assert "record 2" in str(answers[3])
    assert [len(a[1]) for a in answers if not isinstance(a, Exception)] == [1, 1, 1, 2, 2, 2]
    features_only = forest.__class__(forest.steps[:1])  # no estimator: cannot predict anything
    broken = dataclasses.replace(model, pipeline=features_only, fast=None)
    answers = asyncio.run(send(broken))
    assert all(isinstance(a, Exception) and not isinstance(a, UnscorableRecord) for a in answers)


def test_served_answers_match_the_pipeline_on_a_frame_missing_values_included(served):
    """The service's compiled feature step gives the pipeline's own answers, and a missing category (JSON null)
    is the "missing" category the model was trained with, not an unknown one."""
    client = served.mlflow.client()
    model = load_version(client, NAME, registry.aliases(client, NAME)["champion"])
    assert model.fast is not None
    assert model.spec.time == ("event_time",), "the hour, weekday and month of the time are features"
    records = [ROW, {**ROW, "plan": None, "region": None, "age": None}, {**ROW, "device": "fridge"}]
    # a time in another zone is read in the dataset's; one left out has no parts
    records += [{**ROW, "event_time": "2026-01-03T23:30:00-05:00"}, {**ROW, "event_time": "2026-01-02T08:00:00"}]
    records = model.parse(json.dumps({"records": records}).encode())
    served_probabilities = [a["probabilities"]["1"] for a in model.answer(records)]
    frame = pd.DataFrame(records).fillna(np.nan).reindex(columns=model.spec.columns)
    expected = model.pipeline.predict_proba(frame)[:, 1]
    assert served_probabilities == expected.tolist()
    missing_as_nan = pd.DataFrame([{**ROW, "plan": np.nan}]).reindex(columns=model.spec.columns)
    as_none = model.answer([{**ROW, "plan": None}])[0]["probabilities"]["1"]
    assert as_none == model.pipeline.predict_proba(missing_as_nan)[0, 1]


def test_openapi_describes_the_served_versions_records_and_the_error_shape(served):
    status, spec = call(served.url, "/docs.json", token=None)
    assert status == 200 and spec["openapi"].startswith("3.1")
    operation = spec["paths"]["/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    records = body["properties"]["records"]
    assert (records["minItems"], records["maxItems"]) == (1, 50)
    version = registry.aliases(served.mlflow.client(), NAME)["champion"]
    record = spec["components"]["schemas"][f"Record_v{version}"]
    assert set(record["properties"]) == {*ROW, "customer_id", "event_time"} and record["additionalProperties"] is False
    assert set(record["required"]) == set(ROW), "the id and the time may be left out"
    assert {"type": "string", "format": "date-time"} in record["properties"]["event_time"]["anyOf"]
    age = next(branch for branch in record["properties"]["age"]["anyOf"] if branch["type"] == "number")
    assert 1e30 < age["maximum"] <= 3.4028235e38 and age["minimum"] < -1e30
    for code in ("400", "401", "408", "413", "415", "422", "500", "503"):
        assert operation["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert operation["security"] == [{"bearer": []}]
    assert '"predictions"' in json.dumps(operation["responses"]["200"])


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(served):
    operation = schemathesis.openapi.from_url(served.url + "/docs.json")["/predict"]["POST"]
    statuses: dict[int, int] = {}
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        check()
    assert statuses.get(200) and statuses.get(400), statuses  # both valid and invalid bodies were sent
    assert not any(code >= 500 for code in statuses), statuses


def test_token_guards_predict_but_not_health_or_metrics(served):
    assert call(served.url, "/predict", {"records": [ROW]}, token=None)[0] == 401
    for path in ("/livez", "/readyz", "/metrics", "/model"):
        assert call(served.url, path, token=None)[0] == 200, path


def test_metrics_count_requests_by_model_version(served):
    call(served.url, "/predict", {"records": [ROW]})
    text = call(served.url, "/metrics", token=None)[1]
    assert 'nexus_predict_requests_total{model_version="1",outcome="ok"}' in text
    assert 'nexus_predict_latency_seconds_bucket{le="0.1",model_version="1"}' in text
    assert 'nexus_predict_requests_total{model_version="1",outcome="client_error"}' in text


def test_swap_under_load_drops_nothing_and_refuses_a_broken_version(served):
    answers: list[tuple[int, str | None]] = []
    sent: list[tuple[float, float, str | None]] = []  # (sent, answered, version): completion order is not the order
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, body = call(served.url, "/predict", {"records": [ROW]})
            answers.append((status, body["model"]["version"] if status == 200 else body))
            sent.append((started, time.monotonic(), answers[-1][1]))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        client = served.mlflow.client()
        time.sleep(1)
        better = register_version(served.mlflow, served.config, served.data)
        registry.promote(client, NAME, better)
        moved = time.monotonic()
        while time.monotonic() - moved < 20 and (not answers or answers[-1][1] != better):
            time.sleep(0.1)
        broken = register_version(
            served.mlflow,
            served.config,
            served.data,
            trusted_types=[*registry.TRUSTED_TYPES["linear"], "builtins.eval"],
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
    # No flip-flop: once an answer came from the new champion, no request sent after it is answered by the old one
    # (a request already in flight, or batched, before the swap may still finish later with it).
    swapped = min(answered for _, answered, version in sent if version == better)
    assert versions.index(better) > 0
    assert not [version for started, _, version in sent if started > swapped and version == "1"], "no flip-flop"
    info = call(served.url, "/model", token=None)[1]
    assert info["version"] == better
    assert (info["refused"]["version"], info["refused"]["kind"]) == (broken, "content")
    assert "builtins.eval" in info["refused"]["reason"]
    spec = call(served.url, "/docs.json", token=None)[1]
    assert f"Record_v{better}" in spec["components"]["schemas"], "the document follows the served version"


def wait_for(url: str, done, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = call(url, "/model", token=None)[1]
        if done(info):
            return info
        time.sleep(0.2)
    raise AssertionError(f"the service did not get there in {timeout} s: {info}")


def crack_first_tree(model) -> None:
    """Point a forest's first split at a node far past the end of the tree's arrays, as a crafted file could."""
    tree = model[-1].estimators_[0].tree_
    state = tree.__getstate__()
    state["nodes"]["left_child"][0] = 10**6
    tree.__setstate__(state)


def test_a_crafted_tree_is_refused_for_good_and_a_storage_outage_is_retried_until_it_ends(served):
    client = served.mlflow.client()
    serving = call(served.url, "/model", token=None)[1]["version"]  # the alias holds a version refused before
    crafted = register_version(
        served.mlflow, served.config, served.data, family="random_forest", tamper=crack_first_tree
    )
    registry.promote(client, NAME, crafted)
    info = wait_for(served.url, lambda i: (i["refused"] or {}).get("version") == crafted)
    assert info["version"] == serving and info["refused"]["kind"] == "content"
    assert "left child 1000000" in info["refused"]["reason"] and info["refused"]["next_retry_at"] is None
    time.sleep(2)  # four polls: a content refusal is not retried
    assert call(served.url, "/model", token=None)[1]["refused"]["attempts"] == 1

    fine = register_version(served.mlflow, served.config, served.data)
    stored = Path(urlparse(ModelsArtifactRepository.get_underlying_uri(f"models:/{NAME}/{fine}")).path)
    away = stored.with_name(stored.name + ".away")
    stored.rename(away)  # the artifact store loses the version's files for a while
    try:
        registry.promote(client, NAME, fine)
        info = wait_for(served.url, lambda i: (i["refused"] or {}).get("attempts", 0) >= 2)
        assert info["refused"]["kind"] == "transient" and info["refused"]["next_retry_at"]
        assert call(served.url, "/predict", {"records": [ROW]})[1]["model"]["version"] == serving
    finally:
        away.rename(stored)
    info = wait_for(served.url, lambda i: i["version"] == fine)
    assert info["refused"] is None


def test_an_ensemble_champion_answers_the_weighted_average_of_its_members_and_a_cracked_member_is_refused(served):
    client = served.mlflow.client()
    version = register_version(served.mlflow, served.config, served.data, family=ENSEMBLE)
    registry.promote(client, NAME, version)
    info = wait_for(served.url, lambda i: i["version"] == version)
    assert info["family"] == ENSEMBLE and info["members"] == {"linear": 0.25, "random_forest": 0.75}
    rows = served.data.holdout.head(20)
    records = json.loads(model_inputs(rows, served.data.spec).to_json(orient="records", date_format="iso"))
    status, body = call(served.url, "/predict", {"records": records})
    assert status == 200, body
    served_probabilities = np.array([p["probabilities"]["1"] for p in body["predictions"]])
    model = registry.load_pipeline(f"models:/{NAME}/{version}")
    linear, forest = members(model)
    frame = model_inputs(rows, served.data.spec)
    expected = (linear.predict_proba(frame)[:, 1] + 3 * forest.predict_proba(frame)[:, 1]) / 4
    np.testing.assert_allclose(served_probabilities, expected, rtol=0, atol=1e-12)
    loaded = load_version(client, NAME, version)  # each member's feature step compiled, the same vote over them
    parsed = loaded.parse(json.dumps({"records": records}).encode())
    assert loaded.fast is not None and loaded.answer(parsed) == dataclasses.replace(loaded, fast=None).answer(parsed)
    cracked = register_version(
        served.mlflow,
        served.config,
        served.data,
        family=ENSEMBLE,
        tamper=lambda ensemble: crack_first_tree(members(ensemble)[1]),
    )
    registry.promote(client, NAME, cracked)
    info = wait_for(served.url, lambda i: (i["refused"] or {}).get("version") == cracked)
    assert info["version"] == version and "left child 1000000" in info["refused"]["reason"]
    fine = register_version(served.mlflow, served.config, served.data)
    registry.promote(client, NAME, fine)  # the tests after this one are served a single pipeline again
    wait_for(served.url, lambda i: i["version"] == fine)


def test_the_challenger_answers_live_requests_in_shadow_and_is_judged_on_their_labels(served, monkeypatch):
    for key, value in served.env.items():
        monkeypatch.setenv(key, value)
    client, day = served.mlflow.client(), "2026-01-07"
    champion = call(served.url, "/model", token=None)[1]["version"]
    challenger = register_version(served.mlflow, served.config, served.data, family="random_forest")
    client.set_registered_model_alias(NAME, registry.CHALLENGER, challenger)
    wait_for(served.url, lambda info: info["shadow"]["version"] == challenger)
    with embedded_instance() as instance:

        def materialize_day(selection: list[str], **kwargs) -> bool:
            return dg.materialize(
                list(served.defs.assets),
                selection=selection,
                partition_key=day,
                instance=instance,
                resources=served.defs.resources,
                **kwargs,
            ).success

        assert materialize_day(["raw_data", "features"])
        features = served.defs.load_asset_value("features", partition_key=day, instance=instance)
        records = [
            {k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in features[["customer_id", *ROW]].head(100).to_dict("records")
        ]
        answers = [call(served.url, "/predict", {"records": records[i : i + 50]})[1] for i in (0, 50)]
        assert all(answer["model"]["version"] == champion for answer in answers), "the champion answers"
        app_db = build_resources()["app_db"]
        ids = [str(r["customer_id"]) for r in records]
        deadline = time.monotonic() + 30
        while len(stored := shadow_predictions.read(app_db.engine(), NAME, ids)) < 100 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(stored) == 100 and set(stored["challenger_version"]) == {challenger}
        served_labels = {str(p["id"]): str(p["prediction"]) for answer in answers for p in answer["predictions"]}
        assert dict(zip(stored["record_id"], stored["champion_prediction"], strict=True)) == served_labels
        labels_as_of = {"ops": {"ground_truth": {"config": {"as_of": "2026-11-01"}}}}
        assert materialize_day(["ground_truth", "shadow_comparison"], run_config=labels_as_of)
        table = served.defs.load_asset_value("shadow_comparison", partition_key=day, instance=instance)
    [row] = table.to_dict("records")
    assert (row["champion"], row["challenger"], row["labelled"]) == (champion, challenger, 100)
    assert 0 < row["agreement"] <= 1 and 0.5 < row["challenger_score"] <= 1 and 0.5 < row["champion_score"] <= 1
    assert app_db.shadow_record(NAME, challenger)["labelled"].sum() == 100
    text = call(served.url, "/metrics", token=None)[1]
    assert f'nexus_shadow_records_total{{challenger_version="{challenger}",outcome="stored"}} 100.0' in text


def _ok_requests(url: str) -> float:
    text = call(url, "/metrics", token=None)[1]
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "nexus_predict_requests_total" and sample.labels["outcome"] == "ok"
    )


def test_a_service_started_while_the_registry_is_away_creates_none_waits_and_keeps_its_own_metrics(served, tmp_path):
    """A replica starting during a registry outage: no store is created in its place, it says why it waits, it
    serves once the store is back without a restart, and neither replica's metrics wipe the other's."""
    assert call(served.url, "/predict", {"records": [ROW]})[0] == 200
    first_before = _ok_requests(served.url)
    store = Path(served.env["NEXUS_HOME"]) / "mlflow"
    away = store.with_name("mlflow-away")
    store.rename(away)
    env = {**served.env, "NEXUS_SERVING_TOKEN": TOKEN, "NEXUS_SERVING_POLL_SECONDS": "0.5"}
    try:
        with running(serve_command, "/livez", env=env, cwd=REPO, log_path=tmp_path / "second.log") as second:
            status, body = call(second, "/predict", {"records": [ROW]})
            assert status == 503 and f"the tracking store {store / 'mlflow.db'} is missing" in body["message"]
            assert call(second, "/readyz")[0] == 503
            assert call(served.url, "/predict", {"records": [ROW]})[0] == 200, "the loaded model keeps serving"
            time.sleep(1.5)  # three polls of the registry
            assert not store.exists(), "a reader of the registry never creates one"
            away.rename(store)
            deadline = time.monotonic() + 10
            while call(second, "/readyz")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            for _ in range(3):
                assert call(second, "/predict", {"records": [ROW]})[0] == 200
            assert _ok_requests(second) == 3
            assert _ok_requests(served.url) == first_before + 1, "the first replica's counts survive the second"
            log = (tmp_path / "second.log").read_text()
            assert log.count("cannot read the champion alias") == 1, "one line per outage, no traceback"
    finally:
        if away.exists():
            away.rename(store)
