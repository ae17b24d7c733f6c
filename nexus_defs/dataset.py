"""One dataset's graph: its assets, checks, jobs, schedule and sensors, built from its config.

Alone (`NEXUS_CONFIG`), names are plain (`raw_data`, `training`); in a deployment of many, every asset key starts
with the dataset's name (`churn/raw_data`), its assets form one group named after it, and its jobs, sensors and
schedule are named `churn__training` and so on, so nothing of one dataset selects, triggers or blocks another's.
"""

from __future__ import annotations

import warnings

import dagster as dg

from nexus_assets.automation import (
    automate,
    build_automation_sensor,
    build_jobs,
    build_schedules,
    expect_freshness,
)
from nexus_assets.data.assets import build_raw_data
from nexus_assets.features.assets import build_feature_assets
from nexus_assets.monitoring.assets import build_monitoring_assets
from nexus_assets.partitions import partitioning
from nexus_assets.serving.assets import build_serving_assets
from nexus_assets.training.assets import build_training_assets
from nexus_core.config import NexusConfig
from nexus_core.names import INGEST_JOB
from nexus_core.settings import load_settings
from nexus_sensors.champion import build_champion_alias_sensor
from nexus_sensors.late_labels import build_late_labels_sensor
from nexus_sensors.lineage import build_openlineage_sensor
from nexus_sensors.retraining import build_retraining_sensor, build_training_failure_sensor
from nexus_sensors.shadow_gate import build_shadow_gate_sensor
from nexus_sensors.source_files import build_source_files_sensor

# Checks per partition are a Dagster 1.13 preview we rely on knowingly (each day's checks are that day's).
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)
# ... and so is the single-run backfill policy that ingests history as one run (beta in 1.13).
warnings.filterwarnings("ignore", message=".*`backfill_policy`", category=dg.BetaWarning)

Asset = dg.AssetsDefinition | dg.AssetSpec


def dataset_definitions(config: NexusConfig) -> dg.Definitions:
    """The dataset's definitions without resources (the deployment's root adds those once)."""
    interval = load_settings().sensor_interval_seconds
    jobs, partitions = build_jobs(config), partitioning(config)
    assets = [
        build_raw_data(config),
        *build_feature_assets(config),
        *build_training_assets(config),
        *build_serving_assets(config),
        *build_monitoring_assets(config),
    ]
    return dg.Definitions(
        assets=_grouped(config, expect_freshness(config, automate(config, assets))),
        jobs=list(jobs.values()),
        schedules=build_schedules(config, jobs[INGEST_JOB]),
        sensors=[
            build_automation_sensor(config, interval),
            build_champion_alias_sensor(config, interval),
            build_retraining_sensor(config, interval),
            build_training_failure_sensor(config, interval),
            *([build_source_files_sensor(config, interval)] if partitions.cadence == "files" else []),
            *([build_late_labels_sensor(config, partitions.definition(), interval)] if partitions.periods else []),
            *([build_openlineage_sensor(config, interval)] if load_settings().lineage else []),
            *([build_shadow_gate_sensor(config, interval)] if config.model.gate.min_shadow_rows else []),
        ],
    )


def _grouped(config: NexusConfig, assets: list[Asset]) -> list[Asset]:
    """The assets in one group named after the dataset, when it shares a deployment with others (their keys carry
    its prefix already: each asset names its own, `NexusConfig.asset`)."""
    if not config.scoped:
        return assets
    group = config.dataset.name.replace("-", "_")  # group names allow no `-`
    return dg.map_asset_specs(lambda spec: spec.replace_attributes(group_name=group), assets)
