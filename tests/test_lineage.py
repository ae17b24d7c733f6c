"""Lineage beyond Dagster: with a transport configured, each materialization reaches an OpenLineage receiver as
START and COMPLETE run events that the OpenLineage client's schema-generated models accept; off by default."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
    tags_run,
)

from nexus_defs.definitions import build_definitions
from nexus_sensors.lineage import MlflowJobFacet


@pytest.fixture
def receiver():
    """A Marquez-compatible endpoint on loopback that keeps what it is sent."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            assert self.path == "/api/v1/lineage", self.path
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def parsed(body: dict) -> RunEvent:
    """The event rebuilt from the client's models generated from the OpenLineage schema: their validators check
    what the schema requires (ISO times, UUIDs, URIs), and each facet must name its schema."""
    facet_types = {
        "schema": schema_dataset.SchemaDatasetFacet,
        "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet,
        "jobType": job_type_job.JobTypeJobFacet,
        "nominalTime": nominal_time_run.NominalTimeRunFacet,
        "mlflow": MlflowJobFacet,
        "tags": tags_run.TagsRunFacet,  # the client's own version, added to every run
    }

    def facets(raw: dict) -> dict:
        built = {}
        for name, facet in raw.items():
            if name == "parent":
                built[name] = parent_run.ParentRunFacet(
                    run=parent_run.Run(runId=facet["run"]["runId"]), job=parent_run.Job(**facet["job"])
                )
            else:
                fields = {k: v for k, v in facet.items() if not k.startswith("_")}
                if name == "schema":
                    fields["fields"] = [schema_dataset.SchemaDatasetFacetFields(**f) for f in fields["fields"]]
                if name == "tags":
                    fields["tags"] = [tags_run.TagsRunFacetFields(**t) for t in fields["tags"]]
                built[name] = facet_types[name](**fields)
            assert facet["_schemaURL"] == built[name]._schemaURL, name
        return built

    assert body["schemaURL"].startswith("https://openlineage.io/spec/")
    return RunEvent(
        eventType=RunState(body["eventType"]),
        eventTime=body["eventTime"],
        producer=body["producer"],
        run=Run(runId=body["run"]["runId"], facets=facets(body["run"]["facets"])),
        job=Job(namespace=body["job"]["namespace"], name=body["job"]["name"], facets=facets(body["job"]["facets"])),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in body["inputs"]],
        outputs=[
            OutputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=facets(d["facets"]),
                outputFacets=facets(d["outputFacets"]),
            )
            for d in body["outputs"]
        ],
    )


def test_openlineage_is_off_by_default(write_config, monkeypatch):
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE"):
        monkeypatch.delenv(name, raising=False)
    sensors = {sensor.name for sensor in build_definitions(write_config()).sensors}
    assert "openlineage_sensor" not in sensors


def test_each_materialization_reaches_the_receiver_as_valid_openlineage_events(
    trained, instance, receiver, monkeypatch
):
    url, received = receiver
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    defs = build_definitions(trained.config)
    sensor = defs.resolve_sensor_def("openlineage_sensor")
    repository = defs.get_repository_def()

    result = sensor(dg.build_sensor_context(instance=instance, repository_def=repository))
    events = [parsed(body) for body in received]
    materialized = 2 * 6 + 4  # raw_data and features for six days, then the training chain
    assert len(events) == 2 * materialized
    assert {e.eventType for e in events} == {RunState.START, RunState.COMPLETE}
    assert len({e.run.runId for e in events}) == materialized, "one OpenLineage run per asset and Dagster run"

    features = next(e for e in events if e.outputs[0].name == "features" and e.eventType == RunState.COMPLETE)
    assert [d.name for d in features.inputs] == ["raw_data"]
    assert features.outputs[0].outputFacets["outputStatistics"].rowCount == 300
    assert "age" in {field.name for field in features.outputs[0].facets["schema"].fields}
    assert features.run.facets["nominalTime"].nominalStartTime.startswith("2026-01-0")
    assert features.run.facets["parent"].job.name in {"__ASSET_JOB", "__ephemeral_asset_job__", "ingest"}

    challenger = next(e for e in events if e.outputs[0].name == "challenger_model")
    assert challenger.job.facets["mlflow"].links["mlflow_version"].endswith("/versions/1")

    received.clear()
    again = sensor(dg.build_sensor_context(instance=instance, repository_def=repository, cursor=result.cursor))
    assert again.skip_reason and not received, "each materialization is sent once"
