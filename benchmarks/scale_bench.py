"""Scale-out benchmark: `batch_predictions` and `drift_report` over many Parquet partitions, in the run's process
against Dask with one worker and with two (or against the cluster at `--scheduler`), the same tasks each way.

    .venv/bin/python -m benchmarks.scale_bench [--partitions 8] [--rows 2000000]
        [--postgres postgresql+psycopg2://postgres@127.0.0.1:5432/postgres] [--scheduler tcp://host:8786]
        [--plans local dask:1 dask:2]

Builds its own embedded store in a temporary folder: trains a champion on the demo config's 14-day window and
materializes one day of `--rows` rows, whose features file is then copied to `--partitions` consecutive days
(setup, not timed). Each configuration then materializes `batch_predictions` and `drift_report` over all those
days as one run (a backfill's shape), in its own process, with one thread per process (`OMP_NUM_THREADS=1`), so
rows/s per core compares like with like. Reported: wall time, rows/s, rows/s per core, the run process's peak
memory and each Dask worker's (`VmHWM`). With `--scheduler` the run goes to that cluster instead of the local ones,
so the script runs unchanged on a bigger cluster (its workers must reach the same `NEXUS_HOME` or bucket, and the
app database at `--postgres`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import yaml

from benchmarks.batch_bench import REPO, _app_database, _environment  # the same setup as batch scoring's

FIRST_DAY = dt.date(2026, 2, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=8, metavar="N", help="days, from 2026-02-15 on")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows per partition")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="the app database on this PostgreSQL server")
    parser.add_argument("--scheduler", help="measure on this Dask cluster instead of local ones")
    parser.add_argument("--plans", nargs="+", help="only these: local, dask:N (N local workers), or the scheduler")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_setup(args.partitions) if args.measure == "setup" else _measure(args.measure)))
        return
    plans = args.plans or (["local", args.scheduler] if args.scheduler else ["local", "dask:1", "dask:2"])
    with tempfile.TemporaryDirectory(prefix="nexus-scale-bench-") as home, _app_database(args.postgres) as url:
        env = _environment(Path(home), args) | {"OMP_NUM_THREADS": "1", "NEXUS_BENCH_PARTITIONS": str(args.partitions)}
        env |= {"NEXUS_APP_DB_URL": url} if url else {}
        _extend(Path(home) / "big.yaml", args.partitions)
        started = time.perf_counter()
        _child("setup", env, args.partitions)
        print(f"setup: {args.partitions} partitions of {args.rows:,} rows ({time.perf_counter() - started:.0f} s)")
        results = {plan: _child(plan, env, args.partitions) for plan in plans}
    rows = args.partitions * args.rows
    local = results["local"]["rows_per_second"] if "local" in results else None
    print(f"\n{rows:,} rows in {args.partitions} partitions, app database on {'PostgreSQL' if url else 'SQLite'}\n")
    print("| where | cores | seconds | rows/s | rows/s per core | vs in process, per core | run peak | worker peaks |")
    print("|:--|--:|--:|--:|--:|--:|--:|:--|")
    for plan, result in results.items():
        per_core = result["rows_per_second"] / result["cores"]
        workers = ", ".join(f"{mb / 1024:.2f} GB" for mb in result["worker_peak_mb"]) or "-"
        print(
            f"| {plan} | {result['cores']} | {result['seconds']:.1f} | {result['rows_per_second']:,.0f} | "
            f"{per_core:,.0f} | {f'{per_core / local:.2f}' if local else '-'} | {result['peak_mb'] / 1024:.2f} GB | "
            f"{workers} |"
        )
    if {"dask:1", "dask:2"} <= set(results):
        print(
            f"\n2 workers against 1: {results['dask:1']['seconds'] / results['dask:2']['seconds']:.2f}x the throughput"
        )


def _extend(config: Path, partitions: int) -> None:
    """The dataset's days reach the last partition measured, past the demo window's end if need be."""
    raw = yaml.safe_load(config.read_text())
    last = FIRST_DAY + dt.timedelta(days=partitions)
    raw["dataset"]["end_date"] = max(dt.date.fromisoformat(str(raw["dataset"]["end_date"])), last).isoformat()
    config.write_text(yaml.safe_dump(raw))


def _days(count: int) -> list[str]:
    return [(FIRST_DAY + dt.timedelta(days=offset)).isoformat() for offset in range(count)]


def _setup(partitions: int) -> dict:
    from nexus_cli.runs import dagster_instance, materialize
    from nexus_core.config import load_config
    from nexus_core.names import TRAINING_CHAIN
    from nexus_defs.definitions import build_definitions
    from nexus_resources.modes import build_resources

    home = Path(os.environ["NEXUS_HOME"])
    small, big = build_definitions(load_config(home / "nexus.yaml")), build_definitions(load_config(home / "big.yaml"))
    instance = dagster_instance()
    for day in range(1, 15):
        assert materialize(small, instance, ["raw_data", "features"], f"2026-01-{day:02d}").success
    assert materialize(small, instance, TRAINING_CHAIN).success
    first, *others = _days(partitions)
    assert materialize(big, instance, ["raw_data", "features"], first).success
    files = build_resources()["parquet_io_manager"].files()
    source = files.where(["features"], first)[1]
    for day in others:
        target = files.where(["features"], day)[1]
        shutil.copyfile(source, target)
    return {}


def _measure(plan: str) -> dict:
    from nexus_cli.runs import range_tags

    home, days = Path(os.environ["NEXUS_HOME"]), _days(int(os.environ["NEXUS_BENCH_PARTITIONS"]))
    raw = yaml.safe_load((home / "big.yaml").read_text())
    with dask_client(None if plan == "local" else plan) as client:
        selection = ["batch_predictions", "drift_report"]
        defs, instance, seconds = timed_run(home, plan, raw, client, selection, range_tags(days))
        batches = (defs.load_asset_value("batch_predictions", partition_key=day, instance=instance) for day in days)
        rows = sum(len(batch) for batch in batches)
        worker_peaks = sorted(client.run(_peak_mb).values()) if client else []
        cores = sum(client.nthreads().values()) if client else 1
    return {
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "cores": cores,
        "peak_mb": _peak_mb(),
        "worker_peak_mb": worker_peaks,
    }


def _peak_mb() -> float:
    """This process's own high-water mark; defined here so Dask sends it to the workers by value."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def timed_run(
    home: Path, plan: str, raw: dict, client: Any, selection: list[str], tags: dict[str, str] | None = None
) -> tuple[Any, Any, float]:
    """One run of `selection` under the config `raw` (on `client`'s cluster when given): definitions, instance and
    the run's seconds."""
    from nexus_cli.runs import dagster_instance, materialize
    from nexus_core.config import load_config
    from nexus_defs.definitions import build_definitions

    if client:
        raw = raw | {"compute": {"engine": "dask", "scheduler": client.scheduler.address}}
    path = home / f"{plan.replace(':', '-').replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump(raw))
    defs, instance = build_definitions(load_config(path)), dagster_instance()
    started = time.perf_counter()
    result = materialize(defs, instance, selection, tags=tags)
    seconds = time.perf_counter() - started
    assert result.success, [event.message for event in result.all_events if event.is_failure]
    return defs, instance, seconds


@contextmanager
def dask_client(plan: str | None) -> Iterator[Any]:
    """No client for an in-process plan (None); else one of `dask:N` local worker processes (one thread each) or of
    the scheduler at `plan`, closed after."""
    if plan is None:
        yield None
        return
    from distributed import Client, LocalCluster

    workers = int(plan.split(":")[1]) if plan.startswith("dask:") else 0
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        if workers
        else nullcontext(plan) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def child(module: str, env: dict[str, str], *args: str) -> dict:
    """What a benchmark's `--measure` child prints last (JSON); each in its own process, so peaks are its own."""
    done = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(plan: str, env: dict[str, str], partitions: int) -> dict:
    return child("benchmarks.scale_bench", env, "--measure", plan, "--partitions", str(partitions))


if __name__ == "__main__":
    main()
