"""`openlineage_sensor`: each asset materialization becomes OpenLineage run events (START, then COMPLETE), so
lineage reaches Marquez, DataHub or any OpenLineage consumer. Off by default: defined once a transport is
configured the way OpenLineage clients read it (`OPENLINEAGE_URL`, `OPENLINEAGE_CONFIG` or
`OPENLINEAGE__TRANSPORT__*`).

Each event is one asset materialized in one Dagster run: the job is `<dagster job>.<asset>`, the inputs are the
asset's upstream assets, the output carries the column schema and row count, the run points to its Dagster run as
its parent (and to the partition's period as its nominal time), and MLflow links become an `mlflow` job facet.
"""

from __future__ import annotations

import datetime as dt
import uuid

import attr
import dagster as dg
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    JobFacet,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)

from nexus_core import names
from nexus_core.config import NexusConfig

NAMESPACE = "nexusml"  # the jobs' namespace: the platform
MLFLOW_LINKS = ("mlflow_run", "mlflow_version", "champion_version", "mlflow_monitoring_run")
PAGE = 200  # materializations read per asset and tick


@attr.define
class MlflowJobFacet(JobFacet):
    """The MLflow pages behind a materialization: its tracking run, registered version or monitoring run."""

    links: dict[str, str] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return "https://github.com/nexusml/nexusml/blob/main/docs/openlineage/MlflowJobFacet.json"


def build_openlineage_sensor(config: NexusConfig, interval: int | None = None) -> dg.SensorDefinition:
    datasets = f"{NAMESPACE}://{config.dataset.name}"  # the assets' namespace: this dataset's graph

    @dg.sensor(
        name=config.named(names.OPENLINEAGE_SENSOR),
        minimum_interval_seconds=30 if interval is None else interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends each materialization as OpenLineage run events to the configured transport.",
    )
    def openlineage_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = int(context.cursor or 0)
        graph = context.repository_def.asset_graph
        records = []
        for key in graph.materializable_asset_keys:
            if not key.has_prefix(config.prefix):  # another dataset's sensor sends its events
                continue
            found = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=PAGE, ascending=True
            ).records
            records += found
        if not records:
            return dg.SensorResult(skip_reason="no new materialization since the last events sent")
        records.sort(key=lambda record: record.storage_id)
        client, runs = OpenLineageClient(), {}
        for record in records:
            if record.run_id not in runs:
                runs[record.run_id] = context.instance.get_run_record_by_id(record.run_id)
            for event in _events(record, runs[record.run_id], graph, datasets):
                client.emit(event)
        context.log.info(f"sent {2 * len(records)} OpenLineage events for {len(records)} materializations")
        return dg.SensorResult(cursor=str(records[-1].storage_id))

    return openlineage_sensor


def _events(record, run_record, graph, datasets: str) -> list[RunEvent]:
    """START and COMPLETE of one asset materialized in one Dagster run."""
    materialization, key = record.asset_materialization, record.asset_key
    metadata = materialization.metadata
    dagster_run = run_record.dagster_run
    asset = key.to_user_string()
    job = Job(
        namespace=NAMESPACE,
        name=f"{dagster_run.job_name}.{asset}",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DAGSTER", jobType="ASSET"),
            **_mlflow(metadata),
        },
    )
    run_facets = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=dagster_run.run_id),
            job=parent_run.Job(namespace=NAMESPACE, name=dagster_run.job_name),
        ),
        **_nominal_time(graph, key, materialization.partition),
    }
    run = Run(runId=str(uuid.uuid5(uuid.UUID(dagster_run.run_id), f"{asset}:{record.storage_id}")), facets=run_facets)
    inputs = [InputDataset(namespace=datasets, name=parent.to_user_string()) for parent in graph.get(key).parent_keys]
    output = OutputDataset(
        namespace=datasets,
        name=asset,
        facets=_schema(metadata),
        outputFacets=_row_count(metadata),
    )
    started = dt.datetime.fromtimestamp(run_record.start_time or record.timestamp, dt.UTC)
    finished = dt.datetime.fromtimestamp(record.timestamp, dt.UTC)
    return [
        RunEvent(eventType=state, eventTime=when.isoformat(), run=run, job=job, inputs=inputs, outputs=[output])
        for state, when in ((RunState.START, started), (RunState.COMPLETE, finished))
    ]


def _schema(metadata: dict) -> dict:
    schema = metadata.get("dagster/column_schema")
    if schema is None:
        return {}
    fields = [
        schema_dataset.SchemaDatasetFacetFields(name=column.name, type=column.type, description=column.description)
        for column in schema.value.columns
    ]
    return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}


def _row_count(metadata: dict) -> dict:
    rows = metadata.get("dagster/row_count")
    if rows is None:
        return {}
    statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows.value)
    return {"outputStatistics": statistics}


def _mlflow(metadata: dict) -> dict:
    links = {name: metadata[name].value for name in MLFLOW_LINKS if name in metadata}
    return {"mlflow": MlflowJobFacet(links=links)} if links else {}


def _nominal_time(graph, key: dg.AssetKey, partition: str | None) -> dict:
    partitions = graph.get(key).partitions_def
    if partition is None or not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return {}
    window = partitions.time_window_for_partition_key(partition)
    return {
        "nominalTime": nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=window.start.isoformat(), nominalEndTime=window.end.isoformat()
        )
    }
