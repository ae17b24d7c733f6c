"""Names shared across packages: the tags on runs the sensors request, and the assets they target."""

TRIGGER = "nexus/trigger"  # which sensor requested a run
MODEL_VERSION = "nexus/model_version"  # the registered version a run is about
REASON = "nexus/reason"  # why a sensor requested it
REGIME_START = "nexus/regime_start"  # the first partition of the change a retrain was requested for
PARTITION = "dagster/partition"  # Dagster's tag for the partition a run materializes
# ... and for the first and last of a range of partitions materialized in one run
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
RETRAINING_SENSOR, CHAMPION_ALIAS_SENSOR = "retraining_sensor", "champion_alias_sensor"
LATE_LABELS_SENSOR, OPENLINEAGE_SENSOR = "late_labels_sensor", "openlineage_sensor"
SHADOW_GATE_SENSOR, TRAINING_FAILURE_SENSOR = "shadow_gate_sensor", "training_failure_sensor"
INGEST_SCHEDULE, MONITORING_AUTOMATION = "ingest_schedule", "monitoring_automation"

TRAINING_CHAIN = ["training_dataset", "candidate_models", "challenger_model", "champion_model"]
DEPLOY = ["serving_bento"]
INGEST = ["raw_data", "features"]
LABELS = ["ground_truth", "model_performance", "shadow_comparison"]
FILES_PARTITIONS = "source_files"  # the dynamic partitions of a source that arrives as files
INGEST_JOB, TRAINING_JOB, DEPLOY_JOB = "ingest", "training", "deploy"  # the named jobs of the lists above
LABELS_JOB, GATE_JOB = "labels", "gate"
GATE = ["champion_model"]
OTHER_CLASS = "other"  # the class rare classes are pooled into when dataset.rare_classes.group is set
