"""What runs by itself under the Dagster daemon, and the named jobs the sensors request.

Each closed period of a time-partitioned dataset is ingested by `ingest_schedule` (a file source's files by
`source_files_sensor`); the assets that follow a new partition (`FOLLOWS`) are materialized by
`monitoring_automation` once their upstream partition is in and its blocking checks passed. Training and
deploying stay with the retraining and champion alias sensors, as the `training` and `deploy` jobs; labels that
arrive late are read again by `late_labels_sensor`, as the `labels` job.
"""

from __future__ import annotations

import dagster as dg

from nexus_assets.partitions import partitioning
from nexus_core.config import NexusConfig
from nexus_core.names import (
    DEPLOY,
    DEPLOY_JOB,
    GATE,
    GATE_JOB,
    INGEST,
    INGEST_JOB,
    LABELS,
    LABELS_JOB,
    TRAINING_CHAIN,
    TRAINING_JOB,
)

# `eager()` alone ignores failed checks: a partition whose data contract failed must stop here.
FOLLOWS = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
FOLLOWERS = ["features", "batch_predictions", "ground_truth", "model_performance", "drift_report", "shadow_comparison"]


def automate(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with `FOLLOWS` on the ones that follow a new partition."""
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=FOLLOWS) if spec.key.path[-1] in FOLLOWERS else spec,
        assets,
    )


def build_jobs(config: NexusConfig) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """The named jobs, keyed by their plain names (`INGEST_JOB`, ...); each job carries the dataset's scope."""
    name = config.model.registered_name
    jobs = {
        INGEST_JOB: (INGEST, "One partition of the source, read and checked."),
        TRAINING_JOB: (TRAINING_CHAIN, f"Candidates of {name} trained and judged at the gate."),
        LABELS_JOB: (LABELS, "One partition's labels read again and its performance judged."),
        DEPLOY_JOB: (DEPLOY, f"Package the champion of {name} and serve it."),
        GATE_JOB: (GATE, f"The promotion gate again, for the challenger of {name}."),
    }
    return {
        job: dg.define_asset_job(config.named(job), selection=_assets(config, assets), description=description)
        for job, (assets, description) in jobs.items()
    }


def _assets(config: NexusConfig, names: list[str]) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*(config.asset(name) for name in names))


def build_schedules(config: NexusConfig, ingest: dg.UnresolvedAssetJobDefinition) -> list[dg.ScheduleDefinition]:
    """Each closed period ingested, for time partitions (files arrive through `source_files_sensor`)."""
    partitions = partitioning(config)
    if not partitions.periods:
        return []
    cadence = partitions.cadence
    return [
        dg.build_schedule_from_partitioned_job(
            ingest,
            name=config.named("ingest_schedule"),
            description=f"Ingests each {cadence} partition of {config.dataset.name} once its period has closed.",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
    ]


def build_automation_sensor(config: NexusConfig) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        config.named("monitoring_automation"),
        target=_assets(config, FOLLOWERS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Materializes features and monitoring for each new partition once its blocking checks passed.",
    )
