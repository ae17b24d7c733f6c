"""Drift benchmark: NexusML's drift judgement (Evidently's own tests, on samples) against Evidently's full report
over every row of the same data.

    .venv/bin/python benchmarks/drift_bench.py [--rows 1000000]

Reference and current frames of `--rows` rows x 20 columns (12 numeric, 8 categorical), with 6 columns drifted
by amounts from subtle to gross. Each method runs in its own process so its peak memory can be read. Then
the per-column verdicts are compared over further seeds at 100,000 rows to give an agreement rate.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from nexus_assets.lib import reference as reference_sample
from nexus_assets.monitoring import drift
from nexus_core.features import FeatureSpec

NUMERIC = [f"n{i}" for i in range(12)]
CATEGORICAL = [f"c{i}" for i in range(8)]
SPEC = FeatureSpec(tuple(NUMERIC), tuple(CATEGORICAL))
SHIFTS = {"n0": 0.02, "n1": 0.08, "n2": 0.2, "n3": 0.5, "c0": 0.05, "c1": 0.3}  # in standard deviations / mass


def frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def make(shifted: bool) -> pd.DataFrame:
        data = {}
        for i, name in enumerate(NUMERIC):
            shift = SHIFTS.get(name, 0.0) if shifted else 0.0
            data[name] = rng.normal(10 + i, 1 + i / 4, rows) + shift * (1 + i / 4)
        for name in CATEGORICAL:
            p = np.array([0.4, 0.3, 0.2, 0.1])
            if shifted and name in SHIFTS:
                p = p + SHIFTS[name] * np.array([-1, 0, 0, 1])
            data[name] = rng.choice(["a", "b", "c", "d"], rows, p=p / p.sum()).astype(object)
        return pd.DataFrame(data)

    return make(False), make(True)


def run(method: str, rows: int, seed: int) -> dict:
    reference, current = frames(rows, seed)
    started = time.perf_counter()
    if method == "sampled":
        result = drift.measure(reference_sample.sample(reference, reference_sample.REFERENCE_ROWS), current, SPEC)
        share = result.share
        verdicts = dict(zip(result.columns["column"], result.columns["drifted"].astype(bool), strict=True))
    else:
        share, verdicts = _full_report(reference, current)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb, "share": share, "verdicts": verdicts}


def _full_report(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[float, dict[str, bool]]:
    """Evidently's DataDriftPreset report over every row: its drift share and each column's decision."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset(drift_share=0.25)]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    share, verdicts = 0.0, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith("ValueDrift"):
            score, threshold = float(metric["value"]), float(config["threshold"])
            verdicts[config["column"]] = score < threshold if "p_value" in config["method"] else score >= threshold
    return share, verdicts


def in_process(method: str, rows: int, seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", method, "--rows", str(rows), "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", choices=["sampled", "full"])
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run(args.one, args.rows, args.seed)))
        return
    print(
        f"{args.rows:,} rows x 20 columns, reference and current; samples: "
        f"reference {reference_sample.REFERENCE_ROWS:,}, current {drift.CURRENT_ROWS:,}\n"
    )
    full, sampled = in_process("full", args.rows, 0), in_process("sampled", args.rows, 0)
    table = pd.DataFrame(
        [
            {
                "method": "Evidently report, every row",
                "seconds": full["seconds"],
                "peak MB": full["peak_mb"],
                "drift share": full["share"],
            },
            {
                "method": "NexusML (Evidently's tests, sampled)",
                "seconds": sampled["seconds"],
                "peak MB": sampled["peak_mb"],
                "drift share": sampled["share"],
            },
        ]
    )
    print(table.to_markdown(index=False, floatfmt=".2f"))
    agree = [full["verdicts"][c] == sampled["verdicts"][c] for c in full["verdicts"]]
    print(
        f"\nper-column verdicts at {args.rows:,} rows: {sum(agree)}/{len(agree)} agree; drifted (full): "
        f"{sorted(c for c, v in full['verdicts'].items() if v)}; drifted (sampled): "
        f"{sorted(c for c, v in sampled['verdicts'].items() if v)}"
    )
    total = same = 0
    for seed in range(1, 6):
        a, b = in_process("full", 100_000, seed), in_process("sampled", 100_000, seed)
        total += len(a["verdicts"])
        same += sum(a["verdicts"][c] == b["verdicts"][c] for c in a["verdicts"])
    print(f"agreement over 5 more seeds at 100,000 rows: {same}/{total} column verdicts ({same / total:.1%})")


if __name__ == "__main__":
    main()
