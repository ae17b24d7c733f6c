"""The loop's cost per partition: ingest (raw_data, features, their checks) and monitoring (batch predictions, labels,
performance, drift, shadow comparison) of daily partitions, one run each as the daemon runs them, against the
targets of issue 27 (at most 1 s of fixed cost a partition; a year of 1,000-row days in 3 minutes; twenty years of
50-row days ingested and scored in 10 minutes).

    .venv/bin/python -m benchmarks.loop_bench [--days 30] [--rows 1] [--home /tmp/loop-bench]

A fresh embedded home each time: the synthetic source, seven days to train one champion (not timed per
partition), then `--days` days ingested and monitored one after another. With one row a day the cost is fixed
cost (drift is "not judged" below `monitoring.min_drift_rows`); with 1,000 it includes Evidently's report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import time
from pathlib import Path

import yaml

TRAIN_DAYS = 7


def _config(home: Path, days: int, rows: int, name: str) -> Path:
    start = dt.date(2025, 1, 1)
    config = {
        "dataset": {
            "name": "loop-bench",
            "source": {"kind": "synthetic", "seed": 7, "rows_per_day": rows, "label_delay_days": 0},
            "target": "churned",
            "task": "binary_classification",
            "id_column": "customer_id",
            "timestamp": "event_time",
            "start_date": start.isoformat(),
            "end_date": (start + dt.timedelta(days=TRAIN_DAYS + days)).isoformat(),
        },
        "checks": {"max_null_rate": 1.0},  # a day of one row has 0% or 100% of a column missing
        "training": {"window_partitions": TRAIN_DAYS, "min_rows": 50},
        "model": {"registered_name": "loop-bench", "candidates": ["linear"]},
    }
    path = home / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="partitions ingested and monitored, after training")
    parser.add_argument("--rows", type=int, default=1, help="rows a day (the training days have 1,000)")
    parser.add_argument("--home", type=Path, default=Path("/tmp/loop-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    os.environ.update(NEXUS_HOME=str(args.home), NEXUS_MODE="embedded", DAGSTER_HOME=str(args.home / "dagster"))
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    training = _config(args.home, args.days, 1_000, "training.yaml")  # the same days, enough rows to learn from
    os.environ["NEXUS_CONFIG"] = str(_config(args.home, args.days, args.rows, "nexus.yaml"))

    from nexus_assets.definitions import build_definitions
    from nexus_cli.replay import MONITORING
    from nexus_cli.runs import dagster_instance, materialize, run_job
    from nexus_core.config import load_config
    from nexus_core.names import INGEST_JOB, TRAINING_CHAIN

    instance = dagster_instance()
    started = time.perf_counter()
    learn = build_definitions(load_config(training))
    keys = learn.resolve_assets_def("raw_data").partitions_def.get_partition_keys()
    for key in keys[:TRAIN_DAYS]:
        assert run_job(learn, instance, INGEST_JOB, partition_key=key).success, key
    assert materialize(learn, instance, TRAINING_CHAIN).success
    setup = time.perf_counter() - started
    defs = build_definitions(load_config())
    ingest, monitoring = [], []
    for key in keys[TRAIN_DAYS:]:
        began = time.perf_counter()
        assert run_job(defs, instance, INGEST_JOB, partition_key=key).success, key
        ingested = time.perf_counter()
        assert materialize(defs, instance, MONITORING, key).success, key
        ingest.append(ingested - began)
        monitoring.append(time.perf_counter() - ingested)
    per_day = [a + b for a, b in zip(ingest, monitoring, strict=True)]
    mean = statistics.mean(per_day)
    print(f"{args.days} daily partitions of {args.rows:,} row(s) after {setup:.0f} s of set-up and training\n")
    print("| | measured | target |\n|:--|--:|--:|")
    print(
        f"| ingest a partition (mean / median) | {statistics.mean(ingest):.2f} / {statistics.median(ingest):.2f} s | |"
    )
    print(
        f"| monitor a partition (mean / median) | {statistics.mean(monitoring):.2f} / "
        f"{statistics.median(monitoring):.2f} s | |"
    )
    print(f"| a partition end to end | {mean:.2f} s | {'1 s fixed cost' if args.rows == 1 else ''} |")
    print(f"| a year of such days, projected | {365 * mean / 60:.1f} min | 3 min (1,000 rows a day) |")
    print(f"| twenty years of such days, projected | {7300 * mean / 60:.0f} min | 10 min (50 rows a day) |")


if __name__ == "__main__":
    main()
