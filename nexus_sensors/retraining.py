"""`retraining_sensor`: persistent drift or degradation of the champion requests one retrain through the gate;
`training_failure_sensor` records a training or gate run that failed, beside those decisions, for the alerts."""

import datetime as dt
import time

import dagster as dg

from nexus_core import names, registry
from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource
from nexus_sensors import rules as retraining

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def build_retraining_sensor(config: NexusConfig, interval: int | None = None) -> dg.SensorDefinition:
    name, rules = config.model.registered_name, config.monitoring.retraining

    @dg.sensor(
        name=config.named(names.RETRAINING_SENSOR),
        job_name=config.named(names.TRAINING_JOB),
        minimum_interval_seconds=60 if interval is None else interval,
        default_status=dg.DefaultSensorStatus.RUNNING if rules.enabled else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Retrains {name} when {rules.consecutive_partitions} monitored partitions in a row show drift or "
            f"degradation, with a cooldown of {rules.cooldown_partitions} partitions, at least "
            f"{rules.min_labelled_rows} labelled predictions and one retrain in flight at a time."
        ),
    )
    def retraining_sensor(
        context: dg.SensorEvaluationContext, mlflow: MlflowResource, app_db: AppDatabase
    ) -> dg.SensorResult:
        champion = (mlflow.aliases(name) or {}).get(registry.CHAMPION)
        if champion is None:
            return dg.SensorResult(skip_reason=f"{name} has no champion yet")
        history, last_request = app_db.retraining_history(name, limit=1), app_db.last_retrain_request(name)
        running = context.instance.get_run_ids(
            dg.RunsFilter(
                statuses=IN_FLIGHT,
                job_name=config.named(names.TRAINING_JOB),
                tags={names.TRIGGER: names.RETRAINING_SENSOR},
            )
        )
        verdict = retraining.assess(rules, app_db.health(name, champion), champion, last_request, running)
        if verdict.decision == retraining.QUIET:
            return dg.SensorResult(skip_reason=verdict.reason)
        if history and (history[0]["decision"], history[0]["reason"]) == (verdict.decision, verdict.reason):
            return dg.SensorResult(skip_reason=verdict.reason)  # already recorded on an earlier tick
        context.log.info(f"retraining {verdict.decision}: {verdict.reason}")
        run_key = (
            f"{name}:v{champion}:retrain:{verdict.partition}" if verdict.decision == retraining.REQUESTED else None
        )
        app_db.record_retraining(
            registered_model=name,
            decision=verdict.decision,
            champion_version=champion,
            partition=verdict.partition,
            reason=verdict.reason,
            run_key=run_key,
        )
        observation = dg.AssetObservation(
            asset_key=config.asset("registered_model"),
            metadata={"retraining": verdict.decision, "reason": verdict.reason, "champion_version": champion},
        )
        if run_key is None:
            return dg.SensorResult(skip_reason=verdict.reason, asset_events=[observation])
        request = dg.RunRequest(
            run_key=run_key,
            tags={
                names.TRIGGER: names.RETRAINING_SENSOR,
                names.REASON: verdict.reason[:1000],
                names.MODEL_VERSION: champion,
                names.REGIME_START: verdict.regime_start,
            },
        )
        return dg.SensorResult(run_requests=[request], asset_events=[observation])

    return retraining_sensor


def build_training_failure_sensor(config: NexusConfig, interval: int | None = None) -> dg.SensorDefinition:
    name = config.model.registered_name
    judged = (config.named(names.TRAINING_JOB), config.named(names.GATE_JOB))

    @dg.sensor(
        name=config.named(names.TRAINING_FAILURE_SENSOR),
        minimum_interval_seconds=30 if interval is None else interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Records a failed training or gate run of {name} as a retraining decision `failed`, which the "
        "exporter counts and NexusRetrainingFailed alerts on.",
    )
    def training_failure_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase) -> dg.SkipReason:
        # The cursor is the update time of the last failure seen; the first tick watches from now on.
        since = float(context.cursor) if context.cursor else time.time()
        records = context.instance.get_run_records(
            dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE], updated_after=dt.datetime.fromtimestamp(since, dt.UTC)
            ),
            order_by="update_timestamp",
            ascending=True,
        )
        failed = [r for r in records if r.dagster_run.job_name in judged and r.update_timestamp.timestamp() > since]
        final = [r.dagster_run for r in failed if not _will_retry(context.instance, r.dagster_run)]
        for run in final:
            _record_failure(context.instance, app_db, name, run)
        context.update_cursor(str(max([since, *(r.update_timestamp.timestamp() for r in records)])))
        if not failed:
            return dg.SkipReason(f"no training or gate run of {name} failed since the last tick")
        retried = f"; {len(failed) - len(final)} to be retried by the daemon" if len(failed) > len(final) else ""
        return dg.SkipReason(f"recorded {len(final)} failed run(s) {' '.join(r.run_id for r in final)}{retried}")

    return training_failure_sensor


def _record_failure(instance: dg.DagsterInstance, app_db: AppDatabase, name: str, run: dg.DagsterRun) -> None:
    failures = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    message = (failures[-1].event_log_entry.dagster_event.message or "").strip() if failures else ""
    app_db.record_retraining(
        registered_model=name,
        decision=retraining.FAILED,
        champion_version=run.tags.get(names.MODEL_VERSION),
        partition=run.tags.get(names.REGIME_START) or run.tags.get(names.PARTITION),
        reason=f"{run.job_name} run {run.run_id} failed: {message}"[:2000],
        run_key=run.tags.get("dagster/run_key"),
    )


def _will_retry(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the daemon re-executes this failed run (docker/dagster.production.yaml `run_retries`): only the last
    attempt's failure is news."""
    if not instance.run_retries_enabled:
        return False
    allowed = int(run.tags.get("dagster/max_retries", instance.run_retries_max_retries))
    return int(run.tags.get("dagster/retry_number", 0)) < allowed
