"""How long the code location takes to load with 1, 10 and 50 datasets: what the webserver, the daemon and every
run pay before anything runs. Each count is loaded in a fresh Python process, as Dagster loads it, through the root
(`NEXUS_DEFS=DIR`, `nexus_defs.definitions:defs`) up to a resolved repository (every asset, check, job, schedule
and sensor built); the single-dataset path (`NEXUS_CONFIG`) is the reference in the same run.

    .venv/bin/python benchmarks/defs_load.py [--counts 1 10 50] [--repeat 3]

The datasets alternate between the synthetic demo (daily partitions) and a real daily table read from a CSV file
(Seattle's weather 2012-2015, `vega_datasets`), whose partitions are inferred from its timestamps.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
LOAD = """
import time
started = time.perf_counter()
from nexus_defs.definitions import defs
repository = defs().get_repository_def()
repository.get_all_jobs(), repository.sensor_defs, repository.schedule_defs, repository.asset_graph.get_all_asset_keys()
print(round(time.perf_counter() - started, 3), len(repository.asset_graph.get_all_asset_keys()))
"""
IMPORTS = (
    "import time; s = time.perf_counter(); import nexus_defs.definitions; print(round(time.perf_counter() - s, 3))"
)


def _write_datasets(folder: Path, count: int) -> None:
    from vega_datasets import local_data

    from nexus_core.config import load_config

    weather = folder.parent / "seattle.csv"
    if not weather.exists():
        local_data.seattle_weather().to_csv(weather, index=False)
    synthetic = load_config(REPO / "nexus.yaml").model_dump(mode="json", exclude_none=True)
    for number in range(count):
        if number % 2 == 0:
            raw = copy.deepcopy(synthetic)
            raw["dataset"]["name"] = f"churn{number}"
        else:
            raw = {
                "dataset": {
                    "name": f"weather{number}",
                    "source": {"kind": "file", "path": str(weather)},
                    "target": "weather",
                    "task": "multiclass_classification",
                    "timestamp": "date",
                },
                "model": {},
            }
        raw["model"]["registered_name"] = f"model-{number}"
        (folder / f"dataset{number:02d}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _load(env: dict[str, str]) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", LOAD], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    seconds, assets = done.stdout.split()[-2:]
    return float(seconds), int(assets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = {**os.environ, "NEXUS_HOME": f"{scratch}/home", "DO_NOT_TRACK": "1"}
        base.pop("NEXUS_DEFS", None)
        imports = statistics.median(
            float(subprocess.run([sys.executable, "-c", IMPORTS], env=base, cwd=REPO, capture_output=True, text=True)
                  .stdout)
            for _ in range(args.repeat)
        )  # fmt: skip
        print(f"importing the packages: {imports:.2f} s (in every count below)")
        print("| datasets | assets | load (median s) | per dataset beyond one (s) |")
        print("|---|---|---|---|")
        single = [_load({**base, "NEXUS_CONFIG": str(REPO / "nexus.yaml")}) for _ in range(args.repeat)]
        reference = statistics.median(seconds for seconds, _ in single)
        print(f"| 1, alone (`NEXUS_CONFIG`, the reference) | {single[0][1]} | {reference:.2f} | |")
        for count in args.counts:
            folder = Path(scratch) / f"d{count}"
            folder.mkdir()
            _write_datasets(folder, count)
            runs = [_load({**base, "NEXUS_DEFS": str(folder)}) for _ in range(args.repeat)]
            seconds = statistics.median(s for s, _ in runs)
            extra = (seconds - reference) / (count - 1) if count > 1 else float("nan")
            print(f"| {count} | {runs[0][1]} | {seconds:.2f} | {extra:.3f} |")


if __name__ == "__main__":
    main()
