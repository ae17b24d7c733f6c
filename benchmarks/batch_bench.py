"""Batch-scoring benchmark: the `batch_predictions` asset against in-process `predict` on the same frame.

    .venv/bin/python benchmarks/batch_bench.py [--rows 10000000] [--candidates linear random_forest]
        [--postgres postgresql+psycopg2://postgres@127.0.0.1:5432/postgres]

Builds its own embedded store in a temporary folder: trains a champion on the demo config's 14-day window, then
materializes one partition of `--rows` rows (raw_data and features; setup, not timed). Setup and each measured
method run in their own process, so each peak memory figure is that method's own:

- reference: load the features frame, then time `predict` (labels and probabilities) on the whole frame;
- batch_predictions: time a real materialization of the asset for that partition, which reads the features, scores
  them in chunks, writes every row to the app database (SQLite) and the Parquet copy, and records metadata.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIG_DAY = "2026-02-27"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--candidates", nargs="+", help="model families to train (default: the demo config's)")
    parser.add_argument(
        "--postgres", metavar="ADMIN_URL", help="put the app database on this PostgreSQL server (a temporary database)"
    )
    parser.add_argument("--measure", choices=["setup", "reference", "batch_predictions"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_setup() if args.measure == "setup" else _measure(args.measure)))
        return
    with tempfile.TemporaryDirectory(prefix="nexus-batch-bench-") as home, _app_database(args.postgres) as url:
        env = _environment(Path(home), args) | ({"NEXUS_APP_DB_URL": url} if url else {})
        started = time.perf_counter()
        family = _child("setup", env)["family"]
        print(
            f"setup: champion {family} trained, {args.rows:,} rows materialized ({time.perf_counter() - started:.0f} s)"
        )
        results = {method: _child(method, env) for method in ("reference", "batch_predictions")}
    reference = results["reference"]["rows_per_second"]
    where = "PostgreSQL (COPY)" if args.postgres else "SQLite"
    print(f"\n{args.rows:,} rows, champion {family}, app database on {where}, {os.cpu_count()} cores\n")
    print(f"| {'method':<48} | seconds | rows/s     | vs predict | peak RSS |")
    print(f"|{'-' * 50}|---------|------------|------------|----------|")
    labels = {
        "reference": "in-process predict (frame already in memory)",
        "batch_predictions": "batch_predictions (read + score + DB + Parquet)",
    }
    for method, result in results.items():
        print(
            f"| {labels[method]:<48} | {result['seconds']:7.1f} | {result['rows_per_second']:10,.0f} | "
            f"{result['rows_per_second'] / reference:10.2f} | {result['peak_mb'] / 1024:5.2f} GB |"
        )


@contextlib.contextmanager
def _app_database(admin_url: str | None) -> Iterator[str | None]:
    if admin_url is None:
        yield None
        return
    import sqlalchemy as sa

    name = f"nexus_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _environment(home: Path, args: argparse.Namespace) -> dict[str, str]:
    config = yaml.safe_load((REPO / "nexus.yaml").read_text())
    if args.candidates:
        config["model"]["candidates"] = args.candidates
    (home / "nexus.yaml").write_text(yaml.safe_dump(config))
    big = {
        **config,
        "dataset": {**config["dataset"], "source": {**config["dataset"]["source"], "rows_per_day": args.rows}},
    }
    (home / "big.yaml").write_text(yaml.safe_dump(big))
    (home / "dagster").mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    return {
        **os.environ,
        "NEXUS_MODE": "embedded",
        "NEXUS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "NEXUS_CONFIG": str(home / "big.yaml"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def _setup() -> dict:
    from nexus_cli.runs import dagster_instance, materialize
    from nexus_core.config import load_config
    from nexus_core.names import TRAINING_CHAIN
    from nexus_defs.definitions import build_definitions

    home = Path(os.environ["NEXUS_HOME"])
    small, big = build_definitions(load_config(home / "nexus.yaml")), build_definitions(load_config(home / "big.yaml"))
    instance = dagster_instance()
    for day in range(1, 15):
        assert materialize(small, instance, ["raw_data", "features"], f"2026-01-{day:02d}").success
    trained = materialize(small, instance, TRAINING_CHAIN)
    assert trained.success
    assert materialize(big, instance, ["raw_data", "features"], BIG_DAY).success
    return {"family": trained.output_for_node("challenger_model")["family"]}


def _child(method: str, env: dict[str, str]) -> dict:
    command = [sys.executable, __file__, "--measure", method]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(method: str) -> dict:
    from nexus_cli.runs import dagster_instance, materialize
    from nexus_core import registry
    from nexus_core.config import load_config
    from nexus_core.features import fitted_spec, model_inputs
    from nexus_core.inference import predict
    from nexus_defs.definitions import build_definitions
    from nexus_resources.modes import build_resources

    config = load_config()
    defs, instance = build_definitions(config), dagster_instance()
    if method == "reference":
        features = defs.load_asset_value("features", partition_key=BIG_DAY, instance=instance)
        mlflow = build_resources()["mlflow"]
        mlflow.activate()
        name = config.model.registered_name
        pipeline = registry.load_pipeline(
            f"models:/{name}/{registry.aliases(mlflow.client(), name)[registry.CHAMPION]}"
        )
        inputs = model_inputs(features, fitted_spec(pipeline))
        started = time.perf_counter()
        predict(pipeline, inputs)
        seconds, rows = time.perf_counter() - started, len(inputs)
    else:
        started = time.perf_counter()
        result = materialize(defs, instance, ["batch_predictions"], BIG_DAY)
        seconds = time.perf_counter() - started
        assert result.success
        rows = len(defs.load_asset_value("batch_predictions", partition_key=BIG_DAY, instance=instance))
    return {"seconds": seconds, "rows_per_second": rows / seconds, "peak_mb": _peak_mb()}


def _peak_mb() -> float:
    """This process's own high-water mark (getrusage's maxrss would include the parent's, kept across exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


if __name__ == "__main__":
    main()
