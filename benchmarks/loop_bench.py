"""The loop's cost per partition, one run per partition (as the daemon runs each new day) against a range of
partitions in one run (as history is backfilled), on the targets of issue 27: at most 1 s of fixed cost a
partition; a year of 1,000-row days in 3 minutes; twenty years of 50-row days ingested and scored in 10 minutes.

    .venv/bin/python -m benchmarks.loop_bench [--days 365] [--rows 1] [--sample 20] [--home /tmp/loop-bench]

A fresh embedded home each time: the synthetic source, seven 1,000-row days to train one champion (not timed),
then `--sample` days of `--rows` rows ingested and monitored one run each (the reference), then `--days` more
days ingested in one run and monitored in another, as a backfill runs them. With one row a day the cost is fixed
cost (drift is "not judged" below `monitoring.min_drift_rows`).
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
    start = dt.date.today() - dt.timedelta(days=days + 1)  # the newest days closed: daily partitions end today
    config = {
        "dataset": {
            "name": "loop-bench",
            "source": {"kind": "synthetic", "seed": 7, "rows_per_day": rows, "label_delay_days": 0},
            "target": "churned",
            "task": "binary_classification",
            "id_column": "customer_id",
            "timestamp": "event_time",
            "start_date": start.isoformat(),
            "end_date": (start + dt.timedelta(days=days)).isoformat(),
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
    parser.add_argument("--days", type=int, default=365, help="partitions ingested as one range, after training")
    parser.add_argument("--sample", type=int, default=20, help="partitions ingested and monitored one run each")
    parser.add_argument("--rows", type=int, default=1, help="rows a day (the training days have 1,000)")
    parser.add_argument("--home", type=Path, default=Path("/tmp/loop-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    os.environ.update(NEXUS_HOME=str(args.home), NEXUS_MODE="embedded", DAGSTER_HOME=str(args.home / "dagster"))
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    total = TRAIN_DAYS + args.sample + args.days
    training = _config(args.home, total, 1_000, "training.yaml")  # the same days, enough rows to learn from
    os.environ["NEXUS_CONFIG"] = str(_config(args.home, total, args.rows, "nexus.yaml"))

    from nexus_cli.replay import MONITORING
    from nexus_cli.runs import dagster_instance, ingest, materialize, range_tags, run_job
    from nexus_core.config import load_config
    from nexus_core.names import INGEST_JOB, TRAINING_CHAIN
    from nexus_defs.definitions import build_definitions

    instance = dagster_instance()
    started = time.perf_counter()
    learn = build_definitions(load_config(training))
    keys = learn.resolve_assets_def("raw_data").partitions_def.get_partition_keys()
    assert not ingest(learn, instance, keys[:TRAIN_DAYS]).blocked
    assert materialize(learn, instance, TRAINING_CHAIN).success
    setup = time.perf_counter() - started
    defs = build_definitions(load_config())
    sample, history = keys[TRAIN_DAYS : TRAIN_DAYS + args.sample], keys[TRAIN_DAYS + args.sample :]
    ingest_each, monitoring = [], []
    for key in sample:
        began = time.perf_counter()
        assert run_job(defs, instance, INGEST_JOB, partition_key=key).success, key
        ingested = time.perf_counter()
        assert materialize(defs, instance, MONITORING, key).success, key
        ingest_each.append(ingested - began)
        monitoring.append(time.perf_counter() - ingested)
    began = time.perf_counter()
    assert not ingest(defs, instance, history).blocked
    ingested = time.perf_counter()
    assert materialize(defs, instance, ["batch_predictions"], tags=range_tags(history)).success
    scored = time.perf_counter()
    rest = [asset for asset in MONITORING if asset != "batch_predictions"]
    assert materialize(defs, instance, rest, tags=range_tags(history)).success
    ingest_range, score_range = (ingested - began) / len(history), (scored - ingested) / len(history)
    monitor_range = (time.perf_counter() - ingested) / len(history)
    per_day, per_day_range = statistics.mean(ingest_each) + statistics.mean(monitoring), ingest_range + monitor_range
    print(f"daily partitions of {args.rows:,} row(s), after {setup:.0f} s of set-up and training\n")
    print(f"| a partition | one run each ({len(sample)} days) | a range in one run ({len(history)} days) | target |")
    print("|:--|--:|--:|--:|")
    print(f"| ingest (raw_data, features, checks) | {statistics.mean(ingest_each):.3f} s | {ingest_range:.3f} s | |")
    print(
        f"| monitor (scoring, labels, performance, drift) | {statistics.mean(monitoring):.3f} s | "
        f"{monitor_range:.3f} s (scoring {score_range:.3f} s) | |"
    )
    print(f"| end to end | {per_day:.3f} s | {per_day_range:.3f} s | 1 s fixed cost |")
    print(
        f"| a year of days (365 x a partition) | {365 * per_day / 60:.1f} min | {365 * per_day_range / 60:.1f} min | "
        "3 min (1,000 rows a day) |"
    )
    print(
        f"| twenty years of days ingested and scored (7,300 x a partition) | {7300 * per_day / 60:.0f} min | "
        f"{7300 * (ingest_range + score_range) / 60:.1f} min | 10 min (50 rows a day) |"
    )


if __name__ == "__main__":
    main()
