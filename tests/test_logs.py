"""Structured logs: a Dagster run's lines (its events and NexusML's own loggers) and the service's lines are JSON
objects carrying the run id, the step, the partition and the model version, as a log store indexes them."""

import json
import logging

import dagster as dg

from nexus_core import logs, names
from serving.errors import ApiError

JSON_RUN_LOGS = {
    "python_logs": {
        "managed_python_loggers": ["nexus"],
        "python_log_level": "INFO",
        "dagster_handler_config": {
            "handlers": {"json": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
            "formatters": {"json": {"()": "nexus_core.logs.JsonFormatter", "service": "dagster-run"}},
        },
    }
}


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
def scored_day(context: dg.AssetExecutionContext) -> int:
    logging.getLogger("nexus.test").info("scored %d rows", 300)
    context.log.info("done")
    return 300


def test_a_runs_log_lines_are_json_with_its_run_step_partition_and_version(capsys):
    with dg.DagsterInstance.ephemeral(settings=JSON_RUN_LOGS) as instance:
        result = dg.materialize(
            [scored_day], instance=instance, partition_key="2026-01-07", tags={names.MODEL_VERSION: "4"}
        )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("run_id") == result.run_id]
    assert mine and all(line["service"] == "dagster-run" for line in mine)
    own = next(line for line in mine if line["message"] == "scored 300 rows")
    assert (own["step"], own["partition"], own["model_version"], own["level"]) == (
        "scored_day",
        "2026-01-07",
        "4",
        "info",
    )
    assert {"STEP_START", "STEP_SUCCESS"} <= {line.get("event") for line in mine}


def test_the_services_error_lines_are_json_with_status_and_version(monkeypatch, capsys):
    monkeypatch.setenv("NEXUS_LOG_FORMAT", "json")
    logs.configure("serving")
    try:
        raise ValueError("a broken model")
    except ValueError as cause:
        failure = ApiError(500, "version 2 failed to predict (ValueError)")
        failure.__cause__ = cause
    ApiError(422, "records[0].age: not a number", "records[0].age").log("POST /predict", "2")
    ApiError(503, "no champion version is loaded yet").log("POST /predict")
    failure.log("POST /predict", "2")
    refused, waiting, failed = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert waiting["level"] == "warning" and "model_version" not in waiting, "no model yet is no error of the service"
    assert (refused["level"], refused["status"], refused["model_version"], refused["service"]) == (
        "info",
        422,
        "2",
        "serving",
    )
    assert refused["message"] == "POST /predict 422: records[0].age: not a number"
    assert (
        failed["level"] == "error" and failed["status"] == 500 and "ValueError: a broken model" in failed["exception"]
    )
