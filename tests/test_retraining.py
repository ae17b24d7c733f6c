"""The closed loop: drift or degradation that persists requests one retrain, held back by the cooldown, too few
labels and a retrain in flight; the gate decides (waiting for `nexus promote` when approval is required) and the
serving sensor deploys what it promotes."""

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from nexus_assets.partitions import partitioning
from nexus_cli.cli import main as nexus
from nexus_cli.exporter import MonitoringCollector
from nexus_cli.replay import Replay
from nexus_cli.runs import materialize
from nexus_core import names, registry
from nexus_core.config import RetrainingConfig, load_config
from nexus_defs.definitions import build_definitions
from nexus_resources.app_db import AppDatabase
from nexus_resources.modes import build_resources
from nexus_sensors import rules as retraining
from tests.conftest import TRAINING_CHAIN, embedded_instance, materialize_window, register_version

NAME = "nexus-churn-test"
DRIFT_DAY = dt.date(2026, 1, 9)
RULES = RetrainingConfig(consecutive_partitions=2, min_labelled_rows=500, cooldown_partitions=3)


def _health(*flags: tuple[bool, bool | None], labelled: int = 300) -> pd.DataFrame:
    """One row per day from 2026-01-07: (drifted, degraded)."""
    return pd.DataFrame(
        [
            {
                "partition": (dt.date(2026, 1, 7) + dt.timedelta(days=i)).isoformat(),
                "drift_share": 0.5 if drifted else 0.1,
                "drifted": drifted,
                "metric": "roc_auc",
                "metric_value": 0.7,
                "degraded": degraded,
                "labelled_rows": labelled,
            }
            for i, (drifted, degraded) in enumerate(flags)
        ]
    )


def test_a_single_flagged_day_does_not_retrain():
    verdict = retraining.assess(RULES, _health((False, False), (True, None)), "1", None, [])
    assert verdict.decision == retraining.QUIET
    assert "no 2 flagged partitions in a row" in verdict.reason and "2026-01-08 [drift 50% (drifted)" in verdict.reason


def test_persistent_drift_or_degradation_requests_a_retrain():
    verdict = retraining.assess(RULES, _health((False, False), (True, False), (False, True)), "1", None, [])
    assert verdict.decision == retraining.REQUESTED and verdict.partition == "2026-01-09"
    assert "version 1 flagged on 2 partitions in a row" in verdict.reason and "900 labelled" in verdict.reason
    assert verdict.regime_start == "2026-01-08" and "since 2026-01-08" in verdict.reason
    longer = retraining.assess(RULES, _health((True, False), (False, False), *[(True, None)] * 4), "1", None, [])
    assert (longer.regime_start, longer.partition) == ("2026-01-09", "2026-01-12")


def test_a_retrain_for_a_change_weighs_the_rows_since_it_and_cuts_only_when_asked(write_config):
    from nexus_assets.features.split import History, split_by_partition
    from nexus_core.features import FeatureSpec

    frames = {
        f"2026-01-{d:02d}": pd.DataFrame({"age": [float(d)] * 300, "churned": [0, 1] * 150}) for d in range(1, 15)
    }
    days = History.of(frames)
    spec = FeatureSpec(numeric=("age",), categorical=())
    config = write_config({"training": {"window_partitions": 14, "min_rows": 400}})
    weighted = split_by_partition(days, config, spec, since="2026-01-08")
    # validation and holdout are sized on the seven days since the change: a day each, the newest
    assert weighted.manifest["train"]["partitions"] == ["2026-01-01", "2026-01-12"], "every season kept"
    assert weighted.manifest["holdout"]["partitions"] == ["2026-01-14", "2026-01-14"]
    assert weighted.weights.tolist() == [1.0] * 2100 + [3.0] * 1500  # days 8-12 of the training part
    assert "the 1500 training rows since the change at 2026-01-08 weigh 3 times" in weighted.manifest["window"]
    assert set(weighted.older["age"]) <= set(range(1, 13)) and len(weighted.older) == 2000  # older than validation

    config = write_config({"training": {"window_partitions": 14, "min_rows": 400, "on_change": "cut"}})
    cut = split_by_partition(days, config, spec, since="2026-01-10")
    assert cut.manifest["train"]["partitions"][0] == "2026-01-10" and cut.train["age"].min() == 10
    assert cut.manifest["window"].startswith("from 2026-01-10, where the change the retrain was requested for began")
    assert cut.weights is None and cut.older["age"].min() == 1, "the gate checks the days before the cut too"
    too_recent = split_by_partition(days, config, spec, since="2026-01-14")  # 210 training rows by time
    assert too_recent.manifest["train"]["partitions"][0] == "2026-01-01"
    assert "hold too few training rows (training.min_rows=400)" in too_recent.manifest["window"]
    assert "window" not in split_by_partition(days, config, spec).manifest


def test_guardrails_hold_a_persistent_signal():
    flagged = _health((True, True), (True, True), (True, True))
    in_flight = retraining.assess(RULES, flagged, "1", None, ["run-a"])
    assert in_flight.decision == retraining.HELD and "retrain run run-a is still in flight" in in_flight.reason
    cooling = retraining.assess(RULES, flagged, "1", "2026-01-07", [])
    assert cooling.decision == retraining.HELD and "cooling down for 1 more partition(s)" in cooling.reason
    assert retraining.assess(RULES, flagged, "1", "2026-01-06", []).decision == retraining.REQUESTED
    few_labels = retraining.assess(RULES, _health((True, True), (True, True), labelled=100), "1", None, [])
    assert few_labels.decision == retraining.HELD and "only 200 labelled predictions" in few_labels.reason


def test_the_cooldown_counts_from_the_last_request_however_many_holds_followed(tmp_path):
    app_db = AppDatabase(url=f"sqlite:///{tmp_path / 'app.db'}")
    app_db.record_retraining(registered_model=NAME, decision="requested", partition="2026-01-10", reason="drift")
    for day in range(11, 40):
        app_db.record_retraining(registered_model=NAME, decision="held", partition=f"day {day}", reason="cooling")
    assert app_db.last_retrain_request(NAME) == "2026-01-10"
    assert app_db.retraining_counts(NAME) == {"requested": 1, "held": 29}


SCENARIO_DAYS = 35  # five weeks: the change on day 3, and three weeks settled after the promoted retrain


@pytest.fixture
def drifting(write_config, instance, monkeypatch):
    """Champion trained on days 1-6; from DRIFT_DAY on two features shift hard and churn depends more on price."""
    drift = {"start_date": DRIFT_DAY.isoformat(), "features": ["monthly_charges", "support_calls"], "strength": 3.0}
    config = write_config(
        {
            # labels known the same day: late labels are test_daemon's story, and this one plays five weeks
            "dataset": {"source": {"drift": drift, "label_delay_days": 0}, "end_date": "2026-03-31"},
            "monitoring": {"retraining": {"min_labelled_rows": 1800, "cooldown_partitions": 7}},
        }
    )
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    materialize_window(defs, instance)
    assert materialize(defs, instance, TRAINING_CHAIN).success
    return defs


def test_five_weeks_of_drift_retrain_converge_and_serve_what_the_gate_promotes(drifting, instance):
    """The loop over 35 days with a lasting change at DRIFT_DAY: flagged within two days and not before, at most two
    retrains, the alarms clear within 10 days of the promoted retrain, every decision with its reason."""
    days = [(dt.date(2026, 1, 7) + dt.timedelta(days=i)) for i in range(SCENARIO_DAYS)]
    partitions = partitioning(load_config())
    with Replay(drifting, instance, partitions, after="2026-01-06") as replay:
        outcomes = {day: replay.day(day.isoformat()) for day in days}
    for day, outcome in outcomes.items():  # shown when the test fails
        print(day, "FLAGGED" if outcome.flagged else "ok", *outcome.decisions, sep="\n  ")
    assert all(o.success for o in outcomes.values())
    assert all(run.tags["dagster/schedule_name"] == "ingest_schedule" for o in outcomes.values() for run in o.ingest)

    assert all(run.status == dg.DagsterRunStatus.SUCCESS for o in outcomes.values() for _, run in o.runs)

    flagged = [day for day, outcome in outcomes.items() if outcome.flagged]
    assert flagged and min(flagged) - DRIFT_DAY <= dt.timedelta(days=2), "flagged within 2 partitions of the drift"
    assert all(day >= DRIFT_DAY for day in flagged), f"false alarms before the drift: {flagged}"

    retrains = [day for day, outcome in outcomes.items() if outcome.run_of("retraining_sensor")]
    assert 1 <= len(retrains) <= 2, f"at most two retrains, not {retrains}"
    retrain = outcomes[retrains[0]].run_of("retraining_sensor")
    assert retrain.job_name == names.TRAINING_JOB and retrain.tags["dagster/sensor_name"] == names.RETRAINING_SENSOR
    assert retrain.tags[names.REGIME_START] >= DRIFT_DAY.isoformat(), "the retrain learns from the change on"
    app_db = build_resources()["app_db"]
    history = app_db.retraining_history(NAME, limit=1000)
    assert [d["decision"] for d in history].count(retraining.REQUESTED) == len(retrains)
    assert all(d["reason"] for d in history)

    gates = [d for d in app_db.decisions(NAME) if d["actor"] == "gate" and d["champion_version"] is not None]
    assert len(gates) == len(retrains) and all(d["reason"] for d in gates)
    promoted_day = next(day for day in retrains if outcomes[day].run_of("champion_alias_sensor"))
    promoted = next(d for d in gates if d["decision"] == "promoted")
    assert promoted["challenger_score"] > promoted["champion_score"] + promoted["margin"]
    deploy = outcomes[promoted_day].run_of("champion_alias_sensor")
    assert deploy.tags["nexus/model_version"] == promoted["challenger_version"] and deploy.job_name == names.DEPLOY_JOB
    later = [d for d in days if d > promoted_day]
    assert all(
        drifting.load_asset_value("batch_predictions", partition_key=d.isoformat(), instance=instance)["model_version"]
        .eq(deploy.tags["nexus/model_version"])
        .all()
        for d in later
    )
    # Settled 10 days after the promotion: no alarm two days in a row. A single day of 300 rows can cross a
    # threshold by chance (drift against the retrain's small reference, AUC on ~45 positives); alone it never
    # retrains, and the gap between the regimes is gone.
    settled = [d for d in days if d > promoted_day + dt.timedelta(days=10)]
    persistent = [d for d in settled if d in flagged and d - dt.timedelta(days=1) in flagged]
    assert not persistent, f"alarms two days in a row after {promoted_day} + 10 days: {persistent}"

    # Each evaluation is a tick of Dagster's with its reason, and the cursors stay for a daemon started later.
    states = {state.instigator_name: state for state in instance.all_instigator_state()}
    retraining_state = states[names.RETRAINING_SENSOR]
    ticks = instance.get_ticks(retraining_state.instigator_origin_id, retraining_state.selector_id, limit=1000)
    assert all(tick.skip_reason or tick.run_ids for tick in ticks)
    assert sorted(tick.run_ids[0] for tick in ticks if tick.run_ids) == sorted(
        outcomes[day].run_of("retraining_sensor").run_id for day in retrains
    )
    cursor = json.loads(states[names.CHAMPION_ALIAS_SENSOR].instigator_data.cursor)
    assert cursor["aliases"][registry.CHAMPION] == deploy.tags["nexus/model_version"]


def test_approval_required_stops_at_the_gate_until_nexus_promote(write_config, instance, monkeypatch):
    config = write_config({"monitoring": {"retraining": {"approval_required": True}}})
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    materialize_window(defs, instance)
    resources = build_resources()
    mlflow = resources["mlflow"]
    mlflow.activate()
    assert materialize(defs, instance, ["training_dataset"]).success
    window = defs.load_asset_value("training_dataset", instance=instance)
    worse = register_version(mlflow, config, window, shuffle_labels=True)
    registry.promote(mlflow.client(), NAME, worse)

    tags = {names.TRIGGER: names.RETRAINING_SENSOR}
    assert materialize(defs, instance, TRAINING_CHAIN, tags=tags).success
    [gate, *_] = resources["app_db"].decisions(NAME)
    assert gate["decision"] == "awaiting_approval" and "run `nexus promote 2`" in gate["reason"]
    assert registry.aliases(mlflow.client(), NAME)[registry.CHAMPION] == worse

    assert nexus(["promote", "2", "--reason", "approved after review"]) == 0
    assert registry.aliases(mlflow.client(), NAME)[registry.CHAMPION] == "2"


@pytest.fixture
def retrying_instance():
    """An instance that retries a failed run once, as dagster.yaml says."""
    with embedded_instance(run_retries={"enabled": True, "max_retries": 1}) as instance:
        yield instance


def test_a_training_runs_last_failed_attempt_is_recorded_and_exported_for_the_alerts(
    write_config, retrying_instance, monkeypatch
):
    """The first attempt's failure is not news (the daemon retries it); the last attempt's is."""
    instance = retrying_instance
    config = write_config()
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    app_db = build_resources()["app_db"]
    tags = {names.TRIGGER: names.RETRAINING_SENSOR, names.MODEL_VERSION: "3", names.REGIME_START: "2026-01-09"}
    sensor = defs.resolve_sensor_def(names.TRAINING_FAILURE_SENSOR)
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"app_db": app_db}))
    cursor = tick.cursor  # the first tick watches from now on
    for attempt in (0, 1):
        result = defs.resolve_job_def(names.TRAINING_JOB).execute_in_process(
            instance=instance, tags={**tags, "dagster/retry_number": str(attempt)}, raise_on_error=False
        )
        assert not result.success, "no data was ingested, so training_dataset fails"
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"app_db": app_db})
        tick = sensor.evaluate_tick(context)
        assert tick.skip_message.startswith(f"recorded {attempt} failed run(s)") and tick.cursor > cursor
        cursor = tick.cursor
        if attempt == 0:
            assert app_db.retraining_history(NAME) == [], "a failure the daemon retries is not recorded"
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"app_db": app_db})
    assert sensor.evaluate_tick(context).skip_message.startswith("no training or gate run"), "each failure once"

    [recorded] = app_db.retraining_history(NAME, limit=1)
    assert (recorded["decision"], recorded["champion_version"], recorded["partition"]) == ("failed", "3", "2026-01-09")
    assert recorded["reason"].startswith(f"training run {result.run_id} failed")
    samples = {
        (sample.name, sample.labels.get("decision")): sample
        for family in MonitoringCollector(app_db, config).collect()
        for sample in family.samples
    }
    assert samples[("nexus_retraining_decisions_total", "failed")].value == 1
    assert samples[("nexus_retraining_decision_timestamp_seconds", "failed")].labels["partition"] == "2026-01-09"
