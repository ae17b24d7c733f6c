"""What runs by itself: named jobs, the ingestion schedule, and monitoring that follows a new partition once its
blocking checks pass, evaluated by Dagster's own automation engine over a real instance."""

import datetime as dt

import dagster as dg
from dagster import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from nexus_assets.automation import FOLLOWERS, FRESH
from nexus_assets.partitions import partitioning
from nexus_cli.replay import Replay
from nexus_cli.runs import materialize, range_tags
from nexus_core.names import DEPLOY_JOB, INGEST, INGEST_JOB, PARTITION, REASON, TRAINING_CHAIN, TRAINING_JOB
from nexus_defs.definitions import build_definitions

LAST_DAY = "2026-01-31"  # the latest partition of SMALL_CONFIG's range: the one `eager()` follows


def requested(defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None) -> tuple[set, object]:
    """(asset, partition) pairs the automation conditions request now, and the cursor to evaluate from next."""
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    asked = {(name, key) for name in FOLLOWERS for key in result.get_requested_partitions(dg.AssetKey(name))}
    return asked, result.cursor


def test_the_code_location_has_named_jobs_a_schedule_and_sensors_that_use_them(write_config):
    repository = build_definitions(write_config()).get_repository_def()
    jobs = {name: repository.get_job(name) for name in (INGEST_JOB, TRAINING_JOB, DEPLOY_JOB)}
    assert {key.to_user_string() for key in jobs[TRAINING_JOB].asset_layer.executable_asset_keys} == set(TRAINING_CHAIN)
    assert {key.to_user_string() for key in jobs[INGEST_JOB].asset_layer.executable_asset_keys} == set(INGEST)
    assert repository.get_sensor_def("champion_alias_sensor").job_name == DEPLOY_JOB
    assert repository.get_sensor_def("retraining_sensor").job_name == TRAINING_JOB
    automation = repository.get_sensor_def("monitoring_automation")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    graph = repository.asset_graph
    for name in FOLLOWERS:
        assert graph.get(dg.AssetKey(name)).automation_condition is not None, name
    schedule = repository.get_schedule_def("ingest_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == INGEST_JOB


def test_the_schedule_ingests_the_closed_day_and_what_it_missed_oldest_first(write_config, instance):
    """Missed days within `automation.catch_up_partitions` are requested in order; a day already ingested, or being
    ingested by a run of one day or of a range, is not requested again."""
    defs = build_definitions(write_config({"automation": {"catch_up_partitions": 4}}))
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def("ingest_schedule")
    assert schedule.cron_schedule == "0 0 * * *"

    def due(day: int) -> list[str]:
        at = dt.datetime(2026, 1, day, tzinfo=dt.UTC)
        result = schedule.evaluate_tick(
            dg.build_schedule_context(instance, scheduled_execution_time=at, repository_def=repository)
        )
        assert all(run.run_key == run.partition_key for run in result.run_requests)
        return [run.partition_key.removeprefix("2026-01-") for run in result.run_requests]

    assert due(2) == ["01"]
    assert due(10) == ["05", "06", "07", "08", "09"]  # the closed day and the four before it
    assert materialize(defs, instance, ["raw_data"], "2026-01-06").success
    create_run_for_test(
        instance, job_name=INGEST_JOB, status=DagsterRunStatus.NOT_STARTED, tags={PARTITION: "2026-01-08"}
    )
    assert due(10) == ["05", "07", "09"]
    create_run_for_test(
        instance, job_name=INGEST_JOB, status=DagsterRunStatus.STARTED, tags=range_tags(["2026-01-04", "2026-01-05"])
    )
    assert due(10) == ["07", "09"]
    assert materialize(defs, instance, ["raw_data"], "2026-01-09").success
    assert due(10) == ["07"]


def test_monitoring_follows_a_new_partition_only_once_its_blocking_checks_pass(trained, write_config, instance):
    defs = trained.defs
    asked, cursor = requested(defs, instance)  # the first evaluation only starts the cursor
    assert materialize(defs, instance, INGEST, LAST_DAY).success
    asked, cursor = requested(defs, instance, cursor)
    monitoring = ["batch_predictions", "ground_truth", "model_performance", "drift_report", "shadow_comparison"]
    assert asked == {(name, LAST_DAY) for name in monitoring}, asked  # one tick plans the whole chain
    assert materialize(defs, instance, monitoring, LAST_DAY).success  # what the sensor's run does
    asked, cursor = requested(defs, instance, cursor)
    assert not asked, "a partition is followed once"

    # The same day re-read under a data contract it breaks: raw_data's blocking check fails, nothing follows.
    strict_checks = {"checks": {"ranges": {"age": {"min": 18, "max": 20}}}}
    strict = build_definitions(write_config(strict_checks, name="strict.yaml"))
    _, cursor = requested(strict, instance, cursor)
    assert not materialize(strict, instance, ["raw_data"], LAST_DAY).success
    asked, cursor = requested(strict, instance, cursor)
    assert ("features", LAST_DAY) not in asked
    assert materialize(defs, instance, ["raw_data"], LAST_DAY).success  # re-read under the contract it meets
    asked, _ = requested(defs, instance, cursor)
    assert ("features", LAST_DAY) in asked


def test_checks_have_a_result_per_partition(trained, instance):
    """Each day's data contract and monitoring checks are that day's, not one latest result for the asset."""
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("raw_data"), "schema"), limit=50
    )
    assert {record.partition for record in history} == {f"2026-01-0{day}" for day in range(1, 7)}


def test_a_daemon_back_after_ten_missed_days_ingests_them_oldest_first_and_monitors_each(trained, instance):
    """Dagster's own scheduler, asset daemon and run queue (the replay's), last run at the close of day 6 and back
    after day 16 closed: every missed day is ingested by the schedule in order, then followed by the automation."""
    partitions = partitioning(trained.config)
    with Replay(trained.defs, instance, partitions, after="2026-01-06") as replay:
        outcome = replay.monitor("2026-01-16")
    missed = [f"2026-01-{day:02d}" for day in range(7, 17)]
    assert [run.tags[PARTITION] for run in outcome.ingest] == missed
    assert all(run.tags["dagster/schedule_name"] == "ingest_schedule" for run in outcome.ingest)
    assert {run.tags[REASON] for run in outcome.ingest[:-1]} == {"missed: catching up to 2026-01-16"}
    assert outcome.success, [(run.job_name, run.status) for run in outcome.ingest + outcome.monitoring]
    assert {e.partition for e in outcome.checks if e.check_name == "drift_share"} == set(missed)
    assert all(run.tags["dagster/sensor_name"] == "monitoring_automation" for run in outcome.monitoring)
    scheduled = instance.get_runs(dg.RunsFilter(tags={"dagster/schedule_name": "ingest_schedule"}))
    assert len(scheduled) == len(missed), "each missed day once"
    # Caught up, so fresh again: the freshness daemon judged the assets with a policy, on the wall clock.
    fresh = instance.get_freshness_state_records([dg.AssetKey(name) for name in FRESH])
    assert {key.path[-1]: record.freshness_state.value for key, record in fresh.items()} == dict.fromkeys(FRESH, "PASS")
