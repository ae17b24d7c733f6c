"""Prometheus metrics of the monitoring signals (drift, performance, prediction counts, retraining decisions),
read from the app database at every scrape, so the exporter holds no state of its own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from threading import Thread
from wsgiref.simple_server import WSGIServer

import pandas as pd
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from nexus_resources.app_db import AppDatabase


class MonitoringCollector(Collector):
    """Gauges of the newest monitored partition, totals per model version, and counts of retraining decisions."""

    def __init__(self, app_db: AppDatabase, registered_model: str) -> None:
        self.app_db, self.name = app_db, registered_model

    def collect(self) -> Iterator[Metric]:
        health, name = self.app_db.health(self.name), self.name
        drift = _gauge("nexus_drift_share", "Share of drifted columns, newest monitored partition")
        drifted = _gauge("nexus_drift_detected", "1 when the newest monitored partition drifted")
        metric = _gauge(
            "nexus_model_metric", "Selection metric on labelled predictions, newest judged partition", "metric"
        )
        degraded = _gauge("nexus_model_degraded", "1 when the newest judged partition degraded")
        stored = _gauge("nexus_predictions", "Batch predictions stored, per model version")
        labelled = _gauge("nexus_labelled_predictions", "Stored predictions with a label, per model version")
        newest = GaugeMetricFamily(
            "nexus_monitored_partition_timestamp_seconds",
            "Start of the newest monitored partition",
            labels=["registered_model"],
        )
        if len(health):
            latest_drift = _newest(health, "drift_share")
            if latest_drift is not None:
                drift.add_metric([name, latest_drift.model_version], latest_drift.drift_share)
                drifted.add_metric([name, latest_drift.model_version], float(bool(latest_drift.drifted)))
            judged = _newest(health, "degraded")
            if judged is not None:
                metric.add_metric([name, judged.model_version, judged.metric], judged.metric_value)
                degraded.add_metric([name, judged.model_version], float(bool(judged.degraded)))
            for version, rows in health.groupby("model_version"):
                stored.add_metric([name, version], float(rows["predictions"].fillna(0).sum()))
                labelled.add_metric([name, version], float(rows["labelled_rows"].fillna(0).sum()))
            day = dt.datetime.fromisoformat(str(health["partition"].max())).replace(tzinfo=dt.UTC)
            newest.add_metric([name], day.timestamp())
        decisions = CounterMetricFamily(
            "nexus_retraining_decisions", "Automatic retraining decisions", labels=["registered_model", "decision"]
        )
        for decision, count in self.app_db.retraining_counts(name).items():
            decisions.add_metric([name, decision], float(count))
        yield from (drift, drifted, metric, degraded, stored, labelled, newest, decisions)


def serve_metrics(app_db: AppDatabase, registered_model: str, host: str, port: int) -> tuple[WSGIServer, Thread]:
    """Serve `/metrics` on a background thread; `server.shutdown()` stops it."""
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(app_db, registered_model))
    return start_http_server(port, addr=host, registry=registry)


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["registered_model", "model_version", *labels])


def _newest(health: pd.DataFrame, column: str):
    rows = health[health[column].notna()]
    return None if rows.empty else rows.iloc[-1]
