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

from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase


class MonitoringCollector(Collector):
    """Gauges of the newest monitored partition, totals per model version, the champion, and when each kind of gate
    and retraining decision was last made (what docker/prometheus/alerts.yml alerts on)."""

    def __init__(self, app_db: AppDatabase, config: NexusConfig) -> None:
        self.app_db, self.config, self.name = app_db, config, config.model.registered_name

    def collect(self) -> Iterator[Metric]:
        health, name = self.app_db.health(self.name), self.name
        drift = _gauge("nexus_drift_share", "Share of drifted columns, newest monitored partition")
        drifted = _gauge("nexus_drift_detected", "1 when the newest monitored partition drifted")
        metric = _gauge(
            "nexus_model_metric", "Selection metric on labelled predictions, newest judged partition", "metric"
        )
        degraded = _gauge("nexus_model_degraded", "1 when the newest judged partition degraded")
        streaks = {
            column: _gauge(
                f"nexus_{kind}_streak_partitions",
                f"Partitions in a row, up to the newest judged one (labelled), whose {kind} was flagged",
                "partition",
            )
            for column, kind in (("drifted", "drift"), ("degraded", "degradation"))
        }
        stored = _gauge("nexus_predictions", "Batch predictions stored, per model version")
        labelled = _gauge("nexus_labelled_predictions", "Stored predictions with a label, per model version")
        newest = _model_gauge("nexus_monitored_partition_timestamp_seconds", "Start of the newest monitored partition")
        period = _model_gauge("nexus_partition_period_seconds", "Usual time between partitions (their median gap)")
        if len(health):
            latest_drift = _newest(health, "drift_share")
            if latest_drift is not None:
                drift.add_metric([name, latest_drift.model_version], latest_drift.drift_share)
                drifted.add_metric([name, latest_drift.model_version], float(bool(latest_drift.drifted)))
            judged = _newest(health, "degraded")
            if judged is not None:
                metric.add_metric([name, judged.model_version, judged.metric], judged.metric_value)
                degraded.add_metric([name, judged.model_version], float(bool(judged.degraded)))
            for column, gauge in streaks.items():
                flags = health[health[column].notna()]
                if len(flags):
                    last = flags.iloc[-1]
                    gauge.add_metric([name, last.model_version, last.partition], _streak(flags[column]))
            for version, rows in health.groupby("model_version"):
                stored.add_metric([name, version], float(rows["predictions"].fillna(0).sum()))
                labelled.add_metric([name, version], float(rows["labelled_rows"].fillna(0).sum()))
            starts = pd.to_datetime(health["partition"], errors="coerce", utc=True).dropna()
            if len(starts):
                newest.add_metric([name], starts.max().timestamp())
            if len(starts) > 1:
                period.add_metric([name], starts.sort_values().diff().dropna().median().total_seconds())
        consecutive = _model_gauge(
            "nexus_retraining_consecutive_partitions", "Flagged partitions in a row that request a retrain (config)"
        )
        consecutive.add_metric([name], self.config.monitoring.retraining.consecutive_partitions)
        yield from (drift, drifted, metric, degraded, *streaks.values(), stored, labelled, newest, period, consecutive)
        yield from self._decisions()

    def _decisions(self) -> Iterator[Metric]:
        name = self.name
        counts = CounterMetricFamily(
            "nexus_retraining_decisions", "Automatic retraining decisions", labels=["registered_model", "decision"]
        )
        for decision, count in self.app_db.retraining_counts(name).items():
            counts.add_metric([name, decision], float(count))
        gate, retraining = self.app_db.newest_by_decision(name)
        gated = GaugeMetricFamily(
            "nexus_gate_decision_timestamp_seconds",
            "When the gate (or `nexus promote`/`rollback`) last made each kind of decision, with its versions",
            labels=["registered_model", "decision", "challenger_version", "champion_version"],
        )
        for decision, row in gate.items():
            versions = [row["challenger_version"] or "", row["champion_version"] or ""]
            gated.add_metric([name, decision, *versions], _seconds(row["decided_at"]))
        retrained = GaugeMetricFamily(
            "nexus_retraining_decision_timestamp_seconds",
            "When each kind of retraining decision (requested, held, failed) was last made",
            labels=["registered_model", "decision", "champion_version", "partition"],
        )
        for decision, row in retraining.items():
            labels = [name, decision, row["champion_version"] or "", row["partition"] or ""]
            retrained.add_metric(labels, _seconds(row["decided_at"]))
        champion = _model_gauge("nexus_champion_version", "The version the newest promotion or rollback made champion")
        moves = [row for decision, row in gate.items() if decision in CHAMPION_MOVES]
        if moves:
            champion.add_metric([name], float(max(moves, key=lambda row: row["id"])["challenger_version"]))
        yield from (counts, gated, retrained, champion)


CHAMPION_MOVES = ("promoted", "manual_promote", "rollback")  # gate decisions whose challenger_version is champion next


def serve_metrics(app_db: AppDatabase, config: NexusConfig, host: str, port: int) -> tuple[WSGIServer, Thread]:
    """Serve `/metrics` on a background thread; `server.shutdown()` stops it."""
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(app_db, config))
    return start_http_server(port, addr=host, registry=registry)


def _model_gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["registered_model"])


def _streak(flags: pd.Series) -> float:
    """How many of the last values in a row are true."""
    values = flags.astype(bool).to_list()
    return float(next((i for i, flag in enumerate(reversed(values)) if not flag), len(values)))


def _seconds(when: dt.datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["registered_model", "model_version", *labels])


def _newest(health: pd.DataFrame, column: str):
    rows = health[health[column].notna()]
    return None if rows.empty else rows.iloc[-1]
