"""Choosing on more than one slice: older windows of the validation part's length cut from the end of the training
part (rolling origin), each family refitted on the rows before them, and the challenger and the ensemble's weights
chosen over all the windows (`training.selection_windows`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_assets.data import contract
from nexus_assets.features.split import split_by_row
from nexus_assets.training import selection
from nexus_assets.training.assets import older_windows
from nexus_assets.training.candidates import Candidate, estimator, pipeline
from nexus_core.config import NexusConfig
from nexus_core.ensemble import weights
from nexus_core.features import model_inputs


def _config(target: str, task: str, timestamp: str | None = None, windows: int = 2) -> NexusConfig:
    dataset = {"name": "t", "source": {"kind": "file", "path": "t.csv"}, "target": target, "task": task}
    dataset |= {"timestamp": timestamp} if timestamp else {}
    training = {"selection_windows": windows}
    return NexusConfig.model_validate({"dataset": dataset, "model": {"registered_name": "t"}, "training": training})


def _split(config: NexusConfig, frame: pd.DataFrame):
    spec = contract.feature_spec_of(contract.propose(config, frame, None))
    return split_by_row(frame, config, spec)


@pytest.fixture(scope="module")
def seattle() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.seattle_weather()


def test_older_windows_are_the_validation_parts_length_each_trained_on_the_rows_before_it(seattle):
    config = _config("temp_max", "regression", "date", windows=3)
    data = _split(config, seattle)
    data.weights = np.arange(len(data.train), dtype=float)
    windows = older_windows(config, data)
    assert len(windows) == 2
    size, train = len(data.validation), data.train
    for k, window in enumerate(windows, 1):
        assert len(window.validation) == size
        pd.testing.assert_frame_equal(
            window.validation, train.iloc[len(train) - k * size : len(train) - (k - 1) * size].reset_index(drop=True)
        )
        assert window.train["date"].max() < window.validation["date"].min(), "each learns from the past only"
        assert len(window.train) == len(train) - k * size
        np.testing.assert_array_equal(window.weights, data.weights[: len(window.train)])
        assert window.holdout is data.holdout
    # the newest window ends where the validation part begins
    assert windows[0].validation["date"].max() < data.validation["date"].min()
    # a window is cut only while as many rows as it holds (and training.min_rows) are left before it
    assert len(older_windows(_config("temp_max", "regression", "date", windows=50), data)) == len(train) // size - 1
    assert older_windows(_config("temp_max", "regression", "date", windows=1), data) == []


def test_rows_in_no_time_order_give_windows_of_a_shuffle_that_hold_every_class():
    """Penguins as the file stores them: sorted by species. The end of the training part is all Chinstrap; a
    window cut there would train on two species and judge on the third."""
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=["species"])
    assert frame["species"].is_monotonic_increasing or frame["species"].iloc[-1] == "Chinstrap"
    config = _config("species", "multiclass_classification", windows=3)
    data = _split(config, frame)
    assert not data.in_time_order and data.train["species"].tail(40).nunique() == 1
    windows = older_windows(config, data)
    assert len(windows) == 2
    for window in windows:
        assert window.validation["species"].nunique() == 3 and window.train["species"].nunique() == 3
        inside = pd.concat([window.train, window.validation])
        assert len(inside.drop_duplicates()) == len(inside), "a window's rows are not also learned from"


def test_a_window_whose_earlier_rows_lack_a_class_is_not_cut():
    """Breast cancer sorted by its label, kept in that order as if by time: the rows before any older window hold
    one class only."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sort_values("target", ascending=False, kind="stable")
    frame = frame.reset_index(drop=True)
    frame["day"] = pd.date_range("2020-01-01", periods=len(frame), freq="D")
    config = _config("target", "binary_classification", "day")
    data = _split(config, frame)
    assert data.train["target"].nunique() == 2
    assert older_windows(config, data) == []


def test_the_ensembles_weights_are_chosen_over_every_window_and_it_gets_one_model_per_window(seattle):
    config = _config("temp_max", "regression", "date")
    data = _split(config, seattle)
    parts = [data, *older_windows(config, data)]
    windows = [(model_inputs(p.validation, p.spec), p.validation["temp_max"]) for p in parts]
    fitted = {f: [pipeline(config, p, estimator(f, "regression", 7)) for p in parts] for f in config.model.candidates}
    votes = selection.greedy_weights(config, fitted, windows)
    assert sum(votes.values()) <= selection.ROUNDS and sum(v > 0 for v in votes.values()) >= 2, votes
    models = selection.select(config, fitted, windows)
    assert len(models) == 2 and weights(models[0]) == weights(models[1])
    for n, (model, (X, _)) in enumerate(zip(models, windows, strict=True)):
        expected = sum(votes[f] * fitted[f][n].predict(X) for f in votes) / sum(votes.values())
        np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12)
    # over both windows' rows together the mix beats each family
    y = pd.concat([y for _, y in windows])

    def rmse(models: list) -> float:
        predicted = np.concatenate([m.predict(X) for m, (X, _) in zip(models, windows, strict=True)])
        return float(np.sqrt(np.mean((predicted - y.to_numpy()) ** 2)))

    alone, mixed = {f: rmse(ms) for f, ms in fitted.items()}, rmse(models)
    print(f"Seattle weather rmse over two windows: ensemble {mixed:.3f} ({votes}), families {alone}")
    assert mixed < min(alone.values())


def test_the_selection_score_averages_the_windows_where_the_metric_can_be_computed():
    candidate = Candidate("linear", "run", "uri", {"roc_auc": 0.9}, {}, older=[{"roc_auc": 0.7}, {"roc_auc": np.nan}])
    assert candidate.selection_score("roc_auc") == pytest.approx(0.8)
    assert Candidate("linear", "run", "uri", {"roc_auc": 0.9}, {}).selection_score("roc_auc") == 0.9
    assert np.isnan(Candidate("linear", "run", "uri", {"roc_auc": np.nan}, {}).selection_score("roc_auc"))
