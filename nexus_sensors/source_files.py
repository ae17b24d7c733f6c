"""`source_files_sensor`: each new file of a globbed source becomes a partition, ingested as it arrives."""

import dagster as dg

from nexus_core.config import NexusConfig
from nexus_core.files import file_keys
from nexus_core.names import FILES_PARTITIONS, INGEST_JOB


def new_files(config: NexusConfig, instance: dg.DagsterInstance) -> list[str]:
    """Files of the source that are not a partition yet, in name order."""
    known = set(instance.get_dynamic_partitions(config.named(FILES_PARTITIONS)))
    return [key for key in file_keys(config.resolve_path(config.dataset.source.path)) if key not in known]


def build_source_files_sensor(config: NexusConfig, interval: int | None = None) -> dg.SensorDefinition:
    @dg.sensor(
        name=config.named("source_files_sensor"),
        job_name=config.named(INGEST_JOB),
        minimum_interval_seconds=30 if interval is None else interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches {config.dataset.source.path}: each new file becomes a partition and is ingested.",
    )
    def source_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        new = new_files(config, context.instance)
        if not new:
            return dg.SensorResult(skip_reason=f"no new file matches {config.dataset.source.path}")
        context.log.info(f"{len(new)} new file(s): {', '.join(new[:5])}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"{config.dataset.name}:file:{key}", partition_key=key) for key in new],
            dynamic_partitions_requests=[
                dg.DynamicPartitionsDefinition(name=config.named(FILES_PARTITIONS)).build_add_request(new)
            ],
        )

    return source_files_sensor
