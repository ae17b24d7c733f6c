"""The monitoring assets, one module each: `batch_predictions` (scoring.py) and `ground_truth` (ground_truth.py) per
partition, then `model_performance`, each partition's stored predictions judged against its labels, `drift_report`
and `shadow_comparison`. Each runs for one partition or a range of them (a backfill) in one step, judging every
partition on its own."""

import dagster as dg

from nexus_assets.monitoring.drift_report import build_drift_report
from nexus_assets.monitoring.ground_truth import build_ground_truth
from nexus_assets.monitoring.model_performance import build_model_performance
from nexus_assets.monitoring.scoring import build_batch_predictions
from nexus_assets.monitoring.shadow_comparison import build_shadow_comparison
from nexus_assets.partitions import partitions_def
from nexus_core.config import NexusConfig


def build_monitoring_assets(config: NexusConfig) -> list[dg.AssetsDefinition]:
    partitions = partitions_def(config)
    return [
        build_batch_predictions(config, partitions),
        build_ground_truth(config, partitions),
        build_model_performance(config, partitions),
        build_drift_report(config, partitions),
        build_shadow_comparison(config, partitions),
    ]
