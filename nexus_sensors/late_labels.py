"""`late_labels_sensor`: labels that were missing when a partition was monitored are read again once newer data
has arrived, and the partition's performance judged again with them."""

import datetime as dt

import dagster as dg

from nexus_core import names
from nexus_core.config import NexusConfig, SyntheticSource
from nexus_resources.instance import data_present, latest_metadata


def build_late_labels_sensor(
    config: NexusConfig, partitions: dg.TimeWindowPartitionsDefinition, interval: int | None = None
) -> dg.SensorDefinition:
    window, source = config.monitoring.label_window_partitions, config.dataset.source
    # The synthetic source says when its labels land; other sources' missing labels may come on any day.
    delay = dt.timedelta(days=source.label_delay_days if isinstance(source, SyntheticSource) else 0)

    @dg.sensor(
        name=config.named(names.LATE_LABELS_SENSOR),
        job_name=config.named(names.LABELS_JOB),
        minimum_interval_seconds=60 if interval is None else interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Reads the missing labels of the last {window} monitored partitions again whenever a newer partition "
            "has been ingested, and judges their performance again."
        ),
    )
    def late_labels_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        today = data_present(context.instance, partitions, config.asset("raw_data"))
        present = today.isoformat()
        monitored = context.instance.get_materialized_partitions(dg.AssetKey(config.asset("ground_truth")))
        recent = [key for key in partitions.get_partition_keys() if key in monitored][-window:] if window else []
        requests = []
        for key in recent:
            metadata = latest_metadata(context.instance, config.asset("ground_truth"), key)
            due = partitions.time_window_for_partition_key(key).start.date() + delay <= today
            if metadata.get("pending_labels", 0) and metadata.get("as_of", present) < present and due:
                requests.append(
                    dg.RunRequest(
                        run_key=f"{config.dataset.name}:labels:{key}:as-of:{present}",
                        partition_key=key,
                        tags={names.TRIGGER: names.LATE_LABELS_SENSOR},
                    )
                )
        if not requests:
            return dg.SensorResult(skip_reason=f"no partition waits for labels that could be known as of {present}")
        context.log.info(
            f"reading the missing labels of {', '.join(r.partition_key for r in requests)} as of {present}"
        )
        return dg.SensorResult(run_requests=requests)

    return late_labels_sensor
