"""The gate's confidence interval: NexusML's rescaled (m-out-of-n) paired bootstrap against the full paired
bootstrap on the same holdout, for holdouts from a few thousand rows to a few hundred thousand.

    .venv/bin/python benchmarks/gate_bench.py [--rows 2000 50000 300000] [--draws 400]

Two synthetic binary scorers of known quality (the challenger slightly better); prints seconds and the interval
of each method per holdout size, so the speed-up and the agreement are read side by side.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from nexus_assets.training.metrics import BOOTSTRAP_ROWS, CLASSIFICATION, paired_gain_interval


def _outputs(rows: int, seed: int = 0) -> tuple[np.ndarray, tuple, tuple]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    classes = np.array([0, 1])
    outputs = []
    for signal in (0.30, 0.27):  # challenger, reference
        score = np.clip(y * signal + rng.random(rows) * (1 - signal), 0, 1)
        outputs.append(((score > 0.5).astype(int), np.c_[1 - score, score], classes))
    return y, outputs[0], outputs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 50_000, 300_000])
    parser.add_argument("--draws", type=int, default=400)
    args = parser.parse_args()
    table = []
    for rows in args.rows:
        y, challenger, reference = _outputs(rows)
        for name in ("roc_auc", "accuracy"):
            metric = CLASSIFICATION[name]
            for method, cap in (("NexusML (rescaled)", BOOTSTRAP_ROWS), ("full bootstrap", rows)):
                started = time.perf_counter()
                low, high = paired_gain_interval(metric, y, (challenger, reference), 0.95, args.draws, max_rows=cap)
                seconds = time.perf_counter() - started
                table.append(
                    {"rows": rows, "metric": name, "method": method, "seconds": seconds, "low": low, "high": high}
                )
                print(f"{rows:>8,} {name:<9} {method:<19} {seconds:7.2f} s  [{low:+.4f}, {high:+.4f}]", flush=True)
    print()
    print(pd.DataFrame(table).to_markdown(index=False, floatfmt=(".0f", "", "", ".2f", "+.4f", "+.4f")))


if __name__ == "__main__":
    main()
