"""With `compute.engine: dask`, features, batch predictions, drift, labels and performance run as tasks on a real
Dask cluster (two worker processes) and give the same rows and verdicts as in the run's process; a worker killed
mid-partition leaves each row stored once; an unreachable scheduler fails the run naming its address; LightGBM
trains on the cluster over a history longer than the window."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, WorkerPlugin
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from nexus_assets.training.cluster import encoded_partition, encoding
from nexus_cli.runs import materialize, range_tags
from nexus_core import registry
from nexus_core.features import model_inputs
from nexus_defs.definitions import build_definitions
from nexus_resources.frame_io import PartitionFiles

NAME = "nexus-churn-test"
DAYS = ["2026-01-07", "2026-01-08", "2026-01-09", "2026-01-10"]
MONITORING = ["raw_data", "features", "batch_predictions", "drift_report", "ground_truth", "model_performance"]


@pytest.fixture(scope="module")
def cluster():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as c,
        Client(c, set_as_default=False) as client,  # as in a run: no default client to lean on
    ):
        yield c, client


def _dask(write_config, address: str, **changes):
    return write_config({"compute": {"engine": "dask", "scheduler": address}, **changes})


def _outcome(defs, instance, app_db, result) -> dict[str, object]:
    """Each day's stored features and predictions (Parquet and app database) and its drift verdict."""
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    checks = {check.partition: check for check in evaluations if check.asset_key.path[-1] == "drift_report"}
    outcome = {}
    for day in DAYS:
        evaluation = checks[day]
        outcome[day] = {
            "features": defs.load_asset_value("features", partition_key=day, instance=instance),
            "parquet": defs.load_asset_value("batch_predictions", partition_key=day, instance=instance),
            "labels": defs.load_asset_value("ground_truth", partition_key=day, instance=instance),
            "performance": defs.load_asset_value("model_performance", partition_key=day, instance=instance),
            "stored": app_db.predictions_for(NAME, day)
            .drop(columns=["scored_at"])
            .sort_values("id", ignore_index=True),
            "verdict": (evaluation.passed, evaluation.description),
        }
    return outcome


def test_dask_gives_the_same_rows_and_verdicts_as_the_runs_own_process(
    trained, instance, write_config, cluster, monkeypatch
):
    _, client = cluster
    app_db = trained.resources["app_db"]
    result = materialize(trained.defs, instance, MONITORING, tags=range_tags(DAYS))
    local = _outcome(trained.defs, instance, app_db, result)

    config = _dask(write_config, client.scheduler.address)
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    result = materialize(defs, instance, MONITORING, tags=range_tags(DAYS))
    distributed = _outcome(defs, instance, app_db, result)

    ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    tasks = {"feature_partition", "score_partition", "current_sample", "partition_labels", "judge_partition"}
    assert tasks <= set(ran), ran
    for day in DAYS:
        for what in ("features", "parquet", "stored", "labels", "performance"):
            pd.testing.assert_frame_equal(distributed[day][what], local[day][what], obj=f"{what} of {day}")
        assert distributed[day]["verdict"] == local[day]["verdict"]
    assert len(local[DAYS[0]]["stored"]) == 300 and "of columns drifted" in local[DAYS[0]]["verdict"][1]
    assert len(local[DAYS[0]]["labels"]) == 300, "the labels of a day two days old are known"
    assert local[DAYS[0]]["performance"]["rows"].sum() == 300
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(f"scored 300 rows (4 of {len(DAYS)} partitions)" in message for message in logged)


class _KillOnce(WorkerPlugin):
    """Kills the worker process a short while after it starts scoring a partition, once (a marker file says so)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        name = key if isinstance(key, str) else str(key)
        if finish == "executing" and "score_partition" in name and not os.path.exists(self.marker):
            Path(self.marker).write_text(name)
            threading.Timer(0.5, os._exit, args=(1,)).start()


def test_a_worker_killed_mid_partition_leaves_each_row_stored_once(
    trained, instance, write_config, cluster, monkeypatch, tmp_path
):
    _, client = cluster
    # one row a chunk: scoring a day takes seconds, so the worker dies in the middle of one
    config = _dask(write_config, client.scheduler.address, monitoring={"score_chunk_rows": 1})
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features"], tags=range_tags(DAYS)).success
    marker = tmp_path / "killed"
    client.register_plugin(_KillOnce(str(marker)), name="kill-once")
    try:
        result = materialize(defs, instance, ["batch_predictions"], tags=range_tags(DAYS))
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "no worker was killed"
    assert result.success
    app_db = trained.resources["app_db"]
    for day in DAYS:
        stored = app_db.predictions_for(NAME, day)
        features = defs.load_asset_value("features", partition_key=day, instance=instance)
        assert len(stored) == len(features) == 300 and stored["id"].is_unique, day
        parquet = defs.load_asset_value("batch_predictions", partition_key=day, instance=instance)
        assert sorted(parquet["id"].astype(str)) == sorted(stored["id"]), day


def test_a_partition_that_fails_on_a_worker_fails_the_run_naming_it_and_leaves_the_others_whole(
    trained, instance, write_config, cluster, monkeypatch, embedded_home
):
    _, client = cluster
    config = _dask(write_config, client.scheduler.address)
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features"], tags=range_tags(DAYS)).success
    (embedded_home / "storage" / "features" / f"{DAYS[1]}.parquet").write_bytes(b"not parquet")
    result = materialize(defs, instance, ["batch_predictions"], tags=range_tags(DAYS))
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert f"scoring partition {DAYS[1]} failed on the Dask cluster at {client.scheduler.address}" in message
    assert "re-execute" in message
    app_db = trained.resources["app_db"]
    assert app_db.predictions_for(NAME, DAYS[1]).empty, "nothing of the failed partition is stored"
    for day in (DAYS[0], *DAYS[2:]):
        stored = app_db.predictions_for(NAME, day)
        assert len(stored) in (0, 300), f"{day}: a partition is stored whole or not at all"


class _Balloon(WorkerPlugin):
    """Fills the worker's memory as it starts scoring a partition, as a partition too big for the worker would."""

    def __init__(self, size: int) -> None:
        self.size = size

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and "score_partition" in str(key):
            self.held = np.ones(self.size // 8)  # written, so resident


def test_a_partition_too_big_for_its_worker_fails_the_run_naming_it_with_nothing_half_written(
    trained, instance, write_config, monkeypatch, embedded_home
):
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),  # the second death gives up, not the fourth
        LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit="2GiB", host="127.0.0.1", dashboard_address=None
        ) as small,
        Client(small, set_as_default=False) as client,
    ):
        client.register_plugin(_Balloon(3 * 2**30), name="balloon")  # past the nanny's 95% of the limit
        config = _dask(write_config, small.scheduler_address)
        monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
        defs = build_definitions(config)
        assert materialize(defs, instance, ["raw_data", "features"], DAYS[0]).success
        result = materialize(defs, instance, ["batch_predictions"], DAYS[0])
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert f"scoring partition {DAYS[0]} failed on the Dask cluster" in message
    assert "The workers running it died, most often of memory" in message, message
    assert trained.resources["app_db"].predictions_for(NAME, DAYS[0]).empty
    assert not (embedded_home / "storage" / "batch_predictions" / f"{DAYS[0]}.parquet").exists()


def test_an_unreachable_scheduler_fails_the_run_naming_its_address(trained, instance, write_config, monkeypatch):
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens on it here
    config = write_config({"compute": {"engine": "dask", "scheduler": address, "connect_timeout_seconds": 2}})
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    result = materialize(build_definitions(config), instance, ["raw_data", "features"], DAYS[0])
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert f"cannot reach the Dask scheduler at {address}" in message and str(config.path) in message
    assert "compute.engine: local" in message


def test_dask_without_a_scheduler_is_a_config_error_naming_the_key(write_config):
    from nexus_core.config import ConfigError

    with pytest.raises(ConfigError, match=r"compute: engine dask needs compute.scheduler"):
        write_config({"compute": {"engine": "dask"}})


def test_lightgbm_trains_on_the_cluster_over_a_history_longer_than_the_window(
    trained, instance, write_config, cluster, monkeypatch
):
    _, client = cluster
    longer = [f"2026-01-{day:02d}" for day in range(7, 13)]
    changes = {"training": {"window_partitions": None, "max_rows": 1200}, "model": {"candidates": ["lightgbm"]}}
    local = build_definitions(write_config(changes))
    assert materialize(local, instance, ["raw_data", "features"], tags=range_tags(longer)).success
    assert materialize(local, instance, ["training_dataset", "candidate_models"]).success
    [in_window] = local.load_asset_value("candidate_models", instance=instance)
    data = local.load_asset_value("training_dataset", instance=instance)
    assert data.manifest["train"]["partitions"] == ["2026-01-09", "2026-01-10"], "the window: the newest 1,200 rows"
    assert data.history == [f"2026-01-{day:02d}" for day in range(1, 11)]

    config = _dask(write_config, client.scheduler.address, **changes)
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    result = materialize(defs, instance, ["candidate_models"])
    assert result.success, [e.step_failure_data.error.to_string() for e in result.get_step_failure_events()]
    [on_cluster] = defs.load_asset_value("candidate_models", instance=instance)
    ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert {"encoded_partition", "train_part"} <= set(ran), ran

    history = pd.concat(
        [defs.load_asset_value("features", partition_key=day, instance=instance) for day in data.history]
    ).dropna(subset=["churned"])
    params = trained.mlflow.client().get_run(on_cluster.run_id).data.params
    assert int(params["training_rows"]) == len(history) > 2 * len(data.train)
    assert params["trained_on"] == "dask: 10 partitions"
    model = registry.load_pipeline(on_cluster.model_uri)  # through the trusted types and the booster's check
    assert list(model.classes_) == [0, 1]
    # About as good as the same LightGBM fitted on the whole history in one process. Not equal: each worker bins and
    # bags its own rows, and which days a worker holds varies; on a 300-row holdout that moves the AUC by a few
    # hundredths, while classes numbered wrong would turn it upside down (about 0.25).
    alone = clone(model).fit(model_inputs(history, data.spec), history["churned"])
    X_hold, y_hold = model_inputs(data.holdout, data.spec), data.holdout["churned"]
    auc = {name: roc_auc_score(y_hold, m.predict_proba(X_hold)[:, 1]) for name, m in (("dask", model), ("one", alone))}
    assert auc["dask"] > 0.65 and auc["dask"] == pytest.approx(auc["one"], abs=0.05), auc
    assert on_cluster.holdout["roc_auc"] == pytest.approx(auc["dask"])
    assert on_cluster.holdout["roc_auc"] != in_window.holdout["roc_auc"]


def test_each_encoded_partition_holds_every_class_weighing_nothing_and_rows_since_a_change_weigh_more(
    trained, tmp_path
):
    data, files = trained.data, PartitionFiles(str(tmp_path))
    one_class = data.train[data.train["churned"] == 0].head(5)
    files.write(trained.config.asset("features"), "2026-01-04", one_class)
    data.change = ("2026-01-03", 3.0)
    encoded = encoded_partition("2026-01-04", encoding(trained.config, data, files))
    assert list(encoded["__target__"]) == [0] * 5 + [0, 1]
    assert list(encoded["__weight__"]) == [3.0] * 5 + [0.0, 0.0]
