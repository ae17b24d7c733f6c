"""Reading one partition of a large file source: NexusML's per-partition read against reading the whole file with
pandas and filtering it (what the source did before), for CSV and Parquet.

    .venv/bin/python benchmarks/source_bench.py [--rows 2000000] [--days 60]

Writes `--rows` synthetic churn rows spread over `--days` days as one CSV and one Parquet file (row groups of
100,000 rows, in time order), then reads the middle day both ways, each in its own process so its peak memory
can be read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from nexus_assets.data.sources import read_partition
from nexus_assets.data.synthetic import generate_day
from nexus_core.config import SyntheticSource, load_config

START = pd.Timestamp("2026-01-01")


def _write(folder: Path, rows: int, days: int) -> None:
    day = generate_day(SyntheticSource(kind="synthetic", rows_per_day=rows // days), START.date())
    frames = []
    for number in range(days):
        frames.append(day.assign(event_time=day["event_time"] + pd.Timedelta(days=number)))
    frame = pd.concat(frames, ignore_index=True).assign(customer_id=np.arange(rows // days * days))
    frame.to_csv(folder / "events.csv", index=False)
    frame.to_parquet(folder / "events.parquet", row_group_size=100_000)
    for kind in ("csv", "parquet"):
        config = {
            "dataset": {
                "name": "bench",
                "source": {"kind": "file", "path": f"events.{kind}"},
                "target": "churned",
                "task": "binary_classification",
                "id_column": "customer_id",
                "timestamp": "event_time",
                "partitions": "daily",
            },
            "model": {"registered_name": "bench"},
        }
        (folder / f"{kind}.yaml").write_text(yaml.safe_dump(config))


def _peak_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def _measure(folder: str, kind: str, method: str, day: str) -> dict:
    # The high-water mark a process starts with can be its parent's: reset it, so only the read counts.
    Path("/proc/self/clear_refs").write_text("5")
    before = _peak_mb()
    window = (pd.Timestamp(day), pd.Timestamp(day) + pd.Timedelta(days=1))
    started = time.perf_counter()
    if method == "nexusml":
        rows = len(read_partition(load_config(Path(folder) / f"{kind}.yaml"), window))
    else:
        path = Path(folder) / f"events.{kind}"
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
        stamps = pd.to_datetime(frame["event_time"])
        rows = int(((stamps >= window[0]) & (stamps < window[1])).sum())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "peak_mb_above_start": _peak_mb() - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return
    day = (START + pd.Timedelta(days=args.days // 2)).date().isoformat()
    table = []
    with tempfile.TemporaryDirectory() as folder:
        _write(Path(folder), args.rows, args.days)
        for kind in ("csv", "parquet"):
            for method, label in (("nexusml", "NexusML (partition only)"), ("whole", "pandas, whole file")):
                command = [sys.executable, __file__, "--measure", folder, kind, method, day]
                result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
                table.append({"format": kind, "method": label, **result})
                print(table[-1], flush=True)
    print(f"\n{args.rows:,} rows over {args.days} days; reading {day}:\n")
    print(pd.DataFrame(table).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
