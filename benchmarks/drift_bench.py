"""Drift benchmark: NexusML's sampled Evidently drift against full Evidently on the same data.

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
        result = drift.measure(
            reference_sample.sample(reference, reference_sample.REFERENCE_ROWS), current, SPEC, drift_share=0.25
        )
    else:
        with _unsampled():
            result = drift.measure(reference, current, SPEC, drift_share=0.25)
    seconds = time.perf_counter() - started
    verdicts = dict(zip(result.columns["column"], result.columns["drifted"].astype(bool), strict=True))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb, "share": result.share, "verdicts": verdicts}


class _unsampled:
    """Full Evidently: lift the current-side sample cap for the duration."""

    def __enter__(self) -> None:
        self.cap, drift.CURRENT_ROWS = drift.CURRENT_ROWS, sys.maxsize

    def __exit__(self, *exc) -> None:
        drift.CURRENT_ROWS = self.cap


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
                "method": "full Evidently",
                "seconds": full["seconds"],
                "peak MB": full["peak_mb"],
                "drift share": full["share"],
            },
            {
                "method": "NexusML (sampled)",
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
