"""Training past one machine: the lightgbm family on the window in the run's process, on the whole history in the
run's process, and on the whole history with `lightgbm.dask` on two local Dask workers (or the cluster at
`--scheduler`).

    .venv/bin/python -m benchmarks.train_bench [--days 16] [--rows 250000] [--window-rows 1000000]
        [--scheduler tcp://host:8786]

Builds its own embedded store in a temporary folder and ingests `--days` days of `--rows` synthetic rows (before
the demo's drift begins; setup, not timed). Each configuration then materializes `training_dataset` and
`candidate_models` (the lightgbm family alone) in its own process: the window keeps the newest `--window-rows` rows
(`training.max_rows`); "whole history in process" raises it past the history, so the run reads and trains on every
row. Reported: seconds, the rows the model learned from, the run's peak memory and each worker's (`VmHWM`), and the
ROC AUC of each model on the same newest day, which none of them trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.batch_bench import _environment
from benchmarks.scale_bench import _peak_mb, child, dask_client, timed_run

FIRST_DAY = "2026-01-01"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=16, choices=range(6, 18), metavar="N")
    parser.add_argument("--rows", type=int, default=250_000, help="rows per day")
    parser.add_argument("--window-rows", type=int, default=1_000_000, help="training.max_rows")
    parser.add_argument("--scheduler", help="train on this Dask cluster instead of two local workers")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", nargs="+", default=["lightgbm"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_setup(args.days) if args.measure == "setup" else _measure(args.measure, args.days)))
        return
    plans = ["window", "history", args.scheduler or "dask:2"]
    with tempfile.TemporaryDirectory(prefix="nexus-train-bench-") as home:
        env = _environment(Path(home), args) | {"NEXUS_BENCH_WINDOW_ROWS": str(args.window_rows)}
        started = time.perf_counter()
        _child("setup", env, args.days)
        print(f"setup: {args.days} days of {args.rows:,} rows ({time.perf_counter() - started:.0f} s)")
        results = {plan: _child(plan, env, args.days) for plan in plans}
    print(f"\nlightgbm on {args.days} days of {args.rows:,} rows, training.max_rows {args.window_rows:,}\n")
    print("| where | rows learned from | seconds | run peak | worker peaks | AUC on the newest day |")
    print("|:--|--:|--:|--:|:--|--:|")
    names = {"window": "window, in process", "history": "whole history, in process"}
    for plan, result in results.items():
        workers = ", ".join(f"{mb / 1024:.2f} GB" for mb in result["worker_peak_mb"]) or "-"
        print(
            f"| {names.get(plan, f'whole history, {plan}')} | {result['rows']:,} | {result['seconds']:.1f} | "
            f"{result['peak_mb'] / 1024:.2f} GB | {workers} | {result['auc']:.4f} |"
        )


def _days(count: int) -> list[str]:
    import pandas as pd

    return [str(day.date()) for day in pd.date_range(FIRST_DAY, periods=count)]


def _setup(days: int) -> dict:
    from nexus_cli.runs import dagster_instance, materialize, range_tags
    from nexus_core.config import load_config
    from nexus_defs.definitions import build_definitions

    defs = build_definitions(load_config(Path(os.environ["NEXUS_HOME"]) / "big.yaml"))
    assert materialize(defs, dagster_instance(), ["raw_data", "features"], tags=range_tags(_days(days))).success
    return {}


def _measure(plan: str, days: int) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from nexus_core import registry
    from nexus_core.features import model_inputs
    from nexus_resources.modes import build_resources

    home = Path(os.environ["NEXUS_HOME"])
    raw = yaml.safe_load((home / "big.yaml").read_text())
    raw["training"] |= {"window_partitions": None, "max_rows": int(os.environ["NEXUS_BENCH_WINDOW_ROWS"])}
    if plan == "history":
        raw["training"]["max_rows"] = 10**12
    with dask_client(None if plan in ("window", "history") else plan) as client:
        defs, instance, seconds = timed_run(home, plan, raw, client, ["training_dataset", "candidate_models"])
        worker_peaks = sorted(client.run(_peak_mb).values()) if client else []
    [candidate] = defs.load_asset_value("candidate_models", instance=instance)
    data = defs.load_asset_value("training_dataset", instance=instance)
    mlflow = build_resources()["mlflow"]
    mlflow.activate()
    params = mlflow.client().get_run(candidate.run_id).data.params
    newest = defs.load_asset_value("features", partition_key=_days(days)[-1], instance=instance)
    model = registry.load_pipeline(candidate.model_uri)
    scores = model.predict_proba(model_inputs(newest, data.spec))[:, 1]
    return {
        "seconds": seconds,
        "rows": int(params.get("training_rows", len(data.train))),
        "peak_mb": _peak_mb(),
        "worker_peak_mb": worker_peaks,
        "auc": float(roc_auc_score(pd.Series(newest["churned"]), scores)),
    }


def _child(plan: str, env: dict[str, str], days: int) -> dict:
    return child("benchmarks.train_bench", env, "--measure", plan, "--days", str(days))


if __name__ == "__main__":
    main()
