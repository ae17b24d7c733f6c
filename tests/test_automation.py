"""What runs by itself: named jobs, the ingestion schedule, and monitoring that follows a new partition once its
blocking checks pass, evaluated by Dagster's own automation engine over a real instance."""

import datetime as dt

import dagster as dg

from nexus_assets.automation import FOLLOWERS
from nexus_cli.runs import materialize
from nexus_core.names import DEPLOY_JOB, INGEST, INGEST_JOB, TRAINING_CHAIN, TRAINING_JOB
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


def test_the_schedule_ingests_the_day_that_just_closed(write_config, instance):
    schedule = build_definitions(write_config()).get_repository_def().get_schedule_def("ingest_schedule")
    assert schedule.cron_schedule == "0 0 * * *"
    tick = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2026, 1, 8, tzinfo=dt.UTC))
    [run] = schedule.evaluate_tick(tick).run_requests
    assert run.partition_key == "2026-01-07"


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
