"""The single `Definitions` of NexusML, built from `nexus.yaml` and the environment's mode."""

from __future__ import annotations

import warnings

import dagster as dg

from nexus_assets.automation import automate, build_automation_sensor, build_jobs, build_schedules
from nexus_assets.data.assets import build_raw_data
from nexus_assets.features.assets import build_feature_assets
from nexus_assets.monitoring.assets import build_monitoring_assets
from nexus_assets.partitions import partitioning
from nexus_assets.serving.assets import build_serving_assets
from nexus_assets.training.assets import build_training_assets
from nexus_core.config import NexusConfig, load_config
from nexus_core.names import INGEST_JOB
from nexus_core.settings import load_settings
from nexus_resources.settings import build_resources
from nexus_sensors.champion import build_champion_alias_sensor
from nexus_sensors.files import build_source_files_sensor
from nexus_sensors.labels import build_late_labels_sensor
from nexus_sensors.lineage import build_openlineage_sensor
from nexus_sensors.retraining import build_retraining_sensor, build_training_failure_sensor
from nexus_sensors.shadow import build_shadow_gate_sensor

# Checks per partition are a Dagster 1.13 preview we rely on knowingly (each day's checks are that day's).
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)
# ... and so is the single-run backfill policy that ingests history as one run (beta in 1.13).
warnings.filterwarnings("ignore", message=".*`backfill_policy`", category=dg.BetaWarning)


def build_definitions(config: NexusConfig | None = None) -> dg.Definitions:
    config = config or load_config()
    settings = load_settings()
    interval = settings.sensor_interval_seconds
    jobs, partitions = build_jobs(config), partitioning(config)
    return dg.Definitions(
        assets=automate(
            [
                build_raw_data(config),
                *build_feature_assets(config),
                *build_training_assets(config),
                *build_serving_assets(config),
                *build_monitoring_assets(config),
            ]
        ),
        jobs=list(jobs.values()),
        schedules=build_schedules(config, jobs[INGEST_JOB]),
        sensors=[
            build_automation_sensor(),
            build_champion_alias_sensor(config, interval),
            build_retraining_sensor(config, interval),
            build_training_failure_sensor(config),
            *([build_source_files_sensor(config, interval)] if partitions.cadence == "files" else []),
            *([build_late_labels_sensor(config, partitions.definition(), interval)] if partitions.periods else []),
            *([build_openlineage_sensor(config, interval)] if settings.lineage else []),
            *([build_shadow_gate_sensor(config, interval)] if config.model.gate.min_shadow_rows else []),
        ],
        resources=build_resources(),
        # Each job is a short chain of steps: one process per run, not one per step.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded lazily by Dagster's tools, so importing this module reads no config."""
    return build_definitions()
