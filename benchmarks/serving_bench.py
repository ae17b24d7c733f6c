"""Serving benchmark: NexusML's BentoML service against MLServer's scikit-learn runtime (adaptive batching, the
runtime KServe uses), `mlflow models serve` and a bare ASGI floor, on the same model and the same row.

Needs a champion in the embedded store (`make demo`) and `wrk` (`apt-get install wrk`); MLServer is installed on
first use into its own venv under the embedded folder (benchmarks/mlserver-requirements.txt). Run:
    .venv/bin/python benchmarks/serving_bench.py [--seconds 30]
Prints, for single-row JSON at concurrency 1 and 32: throughput, p50, p99 and errors per server; then a
10,000-row request against in-process predict; then the swap time from moving `champion` to every answer
coming from the new version (the registry is restored afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from importlib.metadata import version as installed
from pathlib import Path

import joblib
import mlflow
import pandas as pd

from nexus_cli.processes import reserved_port, running, venv_bin
from nexus_core import registry
from nexus_core.config import load_config
from nexus_core.settings import load_settings
from nexus_resources.modes import build_resources
from serving.model import load_version

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only-bulk", action="store_true", help="only the 10,000-row request (no mlflow, floor, swap)")
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="NexusML only, serving the three default families averaged as one version (every member answers every "
        "row: the slowest ensemble); the champion is restored afterwards",
    )
    args = parser.parse_args()
    config = load_config()
    name = config.model.registered_name
    resource = build_resources()["mlflow"]
    resource.activate()
    client = resource.client()
    champion = registry.aliases(client, name).get(registry.CHAMPION)
    if champion is None:
        sys.exit(f"no champion of {name} yet: run `make demo` first")
    if args.ensemble:
        _bench_ensemble(config, resource, champion, args)
        return
    model = load_version(client, name, champion)
    example = _example_rows(name, champion, model)
    row = example.iloc[:1].to_dict("records")

    env = _env(resource, args.workers)
    print(
        f"model {name} v{champion} ({model.info.get('family')}); {os.cpu_count()} cores; wrk, {args.seconds} s each\n"
    )
    big = pd.concat([example] * (10_000 // len(example) + 1), ignore_index=True).iloc[:10_000]
    if args.only_bulk:
        with _server(["bentoml", "serve", "serving.service:NexusModelService"], env, "/readyz") as nexus_url:
            _bulk(nexus_url, model, big)
        return
    results = []
    with (
        _server(["bentoml", "serve", "serving.service:NexusModelService"], env, "/readyz") as nexus_url,
        _mlserver(model, args.workers) as mlserver_url,
        _server(
            ["mlflow", "models", "serve", "-m", f"models:/{name}@champion", "--env-manager", "local"],
            env,
            "/ping",
            port_flag="-p",
        ) as mlflow_url,
        _server(
            ["uvicorn", "benchmarks.floor_app:app", "--workers", str(args.workers), "--log-level", "warning"], env, "/"
        ) as floor_url,
    ):
        targets = [
            ("NexusML (BentoML)", f"{nexus_url}/predict", {"records": row}),
            ("MLServer sklearn, adaptive batching", f"{mlserver_url}/v2/models/model/infer", _v2_request(row[0])),
            ("mlflow models serve", f"{mlflow_url}/invocations", {"dataframe_records": row}),
            ("bare ASGI floor", f"{floor_url}/", {"records": row}),
        ]
        for label, url, body in targets:
            for concurrency in (1, 32):
                results.append(
                    {"server": label, "concurrency": concurrency, **_wrk(url, body, concurrency, args.seconds)}
                )
        print(pd.DataFrame(results).to_markdown(index=False))
        _bulk(nexus_url, model, big)
        _swap(nexus_url, client, name, champion, row)


def _bench_ensemble(config, resource, champion: str, args: argparse.Namespace) -> None:
    """NexusML at concurrency 1 and 32 on an ensemble of the demo's window's three default families, equally
    weighted, registered and promoted for the run."""
    from nexus_assets.training.candidates import estimator, log_pipeline, pipeline
    from nexus_cli.runs import dagster_instance
    from nexus_core.ensemble import ENSEMBLE, weighted
    from nexus_core.features import model_inputs
    from nexus_defs.definitions import build_definitions

    name, client = config.model.registered_name, resource.client()
    data = build_definitions(config).load_asset_value("training_dataset", instance=dagster_instance())
    families = ("linear", "random_forest", "hist_gradient_boosting")
    fitted = {f: pipeline(config, data, estimator(f, config.dataset.task, config.model.seed)) for f in families}
    with mlflow.start_run(experiment_id=resource.experiment_id(config.dataset.name), run_name="serving bench") as run:
        info = log_pipeline(
            weighted(fitted, dict.fromkeys(families, 1)), ENSEMBLE, model_inputs(data.validation, data.spec).head(5)
        )
    version = registry.register(client, name, info.model_uri, run.info.run_id, {"nexus.family": ENSEMBLE})
    registry.promote(client, name, version)
    try:
        model = load_version(client, name, version)
        body = {"records": _example_rows(name, version, model).iloc[:1].to_dict("records")}
        env = _env(resource, args.workers)
        print(
            f"model {name} v{version} (an ensemble of {', '.join(families)}); {os.cpu_count()} cores; "
            f"wrk, {args.seconds} s each\n"
        )
        with _server(["bentoml", "serve", "serving.service:NexusModelService"], env, "/readyz") as url:
            _post(f"{url}/predict", body)
            label = "NexusML (BentoML), ensemble"
            results = [
                {"server": label, "concurrency": c, **_wrk(f"{url}/predict", body, c, args.seconds)} for c in (1, 32)
            ]
        print(pd.DataFrame(results).to_markdown(index=False))
    finally:
        registry.promote(client, name, champion)  # leave the registry as we found it


def _env(resource, workers: int) -> dict[str, str]:
    return {
        "DO_NOT_TRACK": "1",
        "MLFLOW_TRACKING_URI": resource.tracking_uri,
        "NEXUS_SERVING_WORKERS": str(workers),
        "OMP_NUM_THREADS": "1",  # as `nexus serve` sets it (nexus_cli/bentoml_serve.py)
    }


def _example_rows(name: str, version: str, model) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp)
        example = mlflow.models.Model.load(local).load_input_example(local)
    times = {c: example[c].map(lambda t: None if pd.isna(t) else pd.Timestamp(t).isoformat()) for c in model.spec.time}
    return example[model.spec.columns].assign(**times)  # a JSON body carries times as ISO 8601 text


def _server(command: list[str], env: dict[str, str], health: str, port_flag: str = "--port"):
    """A server on a free loopback port, stopped with its whole process group."""
    program = [venv_bin(command[0]), *command[1:], "--host", "127.0.0.1", port_flag]
    return running(lambda port: [*program, str(port)], health, env=env, cwd=REPO, timeout=180)


@contextmanager
def _mlserver(model, workers: int):
    """MLServer serving the same pipeline (joblib, single-threaded as the service loads it), batching up to 32
    requests or 5 ms, with `workers` parallel inference workers."""
    venv = _mlserver_venv()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "model").mkdir()
        joblib.dump(model.pipeline, root / "model" / "model.joblib")
        model_settings = {
            "name": "model",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
            "max_batch_size": 32,
            "max_batch_time": 0.005,
        }
        (root / "model" / "model-settings.json").write_text(json.dumps(model_settings))

        def command(port: int) -> list[str]:
            """MLServer reads its ports from settings.json: written anew for each port tried."""
            server_settings = {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": reserved_port(),
                "metrics_port": reserved_port(),
                "parallel_workers": workers,
            }
            (root / "settings.json").write_text(json.dumps(server_settings))
            return [str(venv / "bin" / "mlserver"), "start", str(root)]

        with running(command, "/v2/models/model/ready", cwd=root, timeout=180) as url:
            yield url


def _mlserver_venv() -> Path:
    """MLServer in its own venv (its pins clash with BentoML's), with this venv's scientific stack."""
    venv = load_settings().home / "bench" / "mlserver-venv"
    if not (venv / "bin" / "mlserver").exists():
        print(f"installing MLServer into {venv} (once)")
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        same = [
            f"{package}=={installed(package)}" for package in ("scikit-learn", "numpy", "scipy", "pandas", "joblib")
        ]
        requirements = REPO / "benchmarks" / "mlserver-requirements.txt"
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(requirements), *same]
        subprocess.run(pip, check=True)
    return venv


def _v2_request(row: dict) -> dict:
    """The row as an Open Inference Protocol (V2) request: one input per column, decoded into a DataFrame."""
    inputs = [
        {"name": column, "datatype": "BYTES" if isinstance(value, str) else "FP64", "shape": [1], "data": [value]}
        for column, value in row.items()
    ]
    return {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": [{"name": "predict_proba"}]}


def _wrk(url: str, body: dict, concurrency: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [[{json.dumps(body)}]]\n"
        )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    socket = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", out)))
    return {
        "req/s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "errors": non_2xx + socket,
        "requests": requests,
    }


def _ms(text: str) -> str:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return f"{float(value) * {'us': 0.001, 'ms': 1, 's': 1000}[unit]:.1f} ms"


def _post(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def _bulk(url: str, model, frame: pd.DataFrame) -> None:
    """Service throughput on one 10,000-row request: from sending the (pre-encoded) body to having the whole
    answer, so the client's own JSON work is not charged to the service; the answer is decoded and checked after."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    body = json.dumps({"records": records}).encode()
    timings = []
    for _ in range(5):
        request = urllib.request.Request(
            f"{url}/predict", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
        timings.append(time.perf_counter() - started)
        assert len(json.loads(raw)["predictions"]) == len(records)
    in_process = []
    for _ in range(5):
        started = time.perf_counter()
        model.predict(model.frame(records))
        in_process.append(time.perf_counter() - started)
    served, local = len(records) / min(timings), len(records) / min(in_process)
    print(
        f"\n10,000 rows in one request: {served:,.0f} rows/s over HTTP vs {local:,.0f} rows/s in-process "
        f"frame + predict on the same rows (ratio {served / local:.2f}; best of 5)"
    )


def _swap(url: str, client, name: str, champion: str, row: list[dict]) -> None:
    """Move `champion` to a new version (same artifact) under load; time until every answer is the new one."""
    source = client.get_model_version(name, champion)
    twin = client.create_model_version(
        name,
        source=source.source,
        run_id=source.run_id,
        tags={"nexus.benchmark": "swap twin"},
        model_id=source.model_id,
    ).version
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                version = _post(f"{url}/predict", {"records": row})["model"]["version"]
                answers.append((time.monotonic(), 200, version))
            except OSError as error:
                answers.append((time.monotonic(), getattr(error, "code", 0), ""))

    clients = [threading.Thread(target=load) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(2)
    moved = time.monotonic()
    registry.promote(client, name, str(twin))
    time.sleep(8)
    stop.set()
    for thread in clients:
        thread.join()
    registry.promote(client, name, champion)  # leave the registry as we found it
    client.delete_model_version(name, str(twin))
    old_after = [t for t, _, version in answers if t > moved and version != str(twin)]
    failed = [a for a in answers if a[1] != 200]
    last_old = max(old_after) - moved if old_after else 0.0
    print(
        f"\nswap: every answer from v{twin} {last_old:.2f} s after the alias moved "
        f"({len(answers)} requests during the swap, {len(failed)} failed)"
    )


if __name__ == "__main__":
    main()
