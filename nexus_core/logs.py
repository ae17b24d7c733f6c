"""Structured logs: one JSON object per line, with the labels a log store (Loki) indexes on (`service`) and the
fields an operator filters by (`run_id`, `model_version`, `partition`, `request_id`) where the record has them.

`configure(service)` sets it up for a NexusML process: JSON when NEXUS_LOG_FORMAT=json (the production stack's
default), readable text otherwise. Dagster runs use the same formatter through `python_logs` in dagster.yaml, where
each record carries Dagster's own run id and step.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os

from nexus_core import names

FIELDS = ("run_id", "model_version", "registered_model", "partition", "route", "status", "step")


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: time, level, service, logger, message, and the NexusML fields it carries."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service or os.environ.get("NEXUS_SERVICE", "nexus")

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        meta = getattr(record, "dagster_meta", None) or {}  # Dagster's records: its run, step and event
        if meta:
            tags = meta.get("job_tags") or {}
            line.update(run_id=meta.get("run_id"), job=meta.get("job_name"), step=meta.get("step_key"))
            line.update(model_version=tags.get(names.MODEL_VERSION), partition=tags.get(names.PARTITION))
            event = meta.get("dagster_event")
            if event is not None:
                line["event"] = event.event_type_value
            line["message"] = meta.get("orig_message") or line["message"]
        line.update({field: getattr(record, field) for field in FIELDS if getattr(record, field, None) is not None})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps({key: value for key, value in line.items() if value is not None}, default=str)


def configure(service: str, level: int = logging.INFO) -> None:
    """Log NexusML's own loggers (`nexus.*`) to standard error: JSON when NEXUS_LOG_FORMAT=json, else text."""
    os.environ.setdefault("NEXUS_SERVICE", service)
    handler = logging.StreamHandler()
    if os.environ.get("NEXUS_LOG_FORMAT", "text") == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("nexus")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
