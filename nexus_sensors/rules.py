"""When the champion should be retrained: persistent drift or degradation, held back by the guardrails."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nexus_core.config import RetrainingConfig

REQUESTED, HELD, QUIET = "requested", "held", "quiet"
FAILED = "failed"  # recorded by training_failure_sensor: a training or gate run's last attempt failed


@dataclass(frozen=True)
class Assessment:
    decision: str  # requested | held | quiet (nothing persistent to act on)
    reason: str
    partition: str | None = None  # the newest flagged partition
    regime_start: str | None = None  # the first partition of the flagged run the newest belongs to


def assess(
    rules: RetrainingConfig,
    health: pd.DataFrame,
    champion: str,
    last_request: str | None,
    running: list[str],
) -> Assessment:
    """Decide on the champion's per-partition signals (`app_db.health`, oldest first).

    `last_request` is the partition of the last requested retrain; `running` the ids of retrain runs in flight.
    """
    recent = health.tail(rules.consecutive_partitions)
    flagged = recent["drifted"].eq(True) | recent["degraded"].eq(True)
    if len(recent) < rules.consecutive_partitions or not flagged.all():
        seen = ", ".join(f"{r.partition} {_signals(r)}" for r in recent.itertuples()) or "no partitions monitored"
        return Assessment(
            QUIET, f"version {champion}: no {rules.consecutive_partitions} flagged partitions in a row ({seen})"
        )
    newest = str(recent["partition"].iloc[-1])
    signal = "; ".join(f"{r.partition} {_signals(r)}" for r in recent.itertuples())
    persistent = f"version {champion} flagged on {len(recent)} partitions in a row ({signal})"
    if running:
        return Assessment(HELD, f"{persistent}, but retrain run {running[0]} is still in flight", newest)
    if last_request is not None:
        since = int((health["partition"].astype(str) > last_request).sum())
        if since < rules.cooldown_partitions:
            return Assessment(
                HELD,
                f"{persistent}, but the last retrain was requested at {last_request}; cooling down for "
                f"{rules.cooldown_partitions - since} more partition(s) "
                f"(cooldown_partitions {rules.cooldown_partitions})",
                newest,
            )
    labelled = int(health["labelled_rows"].fillna(0).sum())
    if labelled < rules.min_labelled_rows:
        return Assessment(
            HELD,
            f"{persistent}, but only {labelled} labelled predictions since it took over "
            f"(monitoring.retraining.min_labelled_rows is {rules.min_labelled_rows})",
            newest,
        )
    start = _run_start(health)
    return Assessment(
        REQUESTED,
        f"{persistent} since {start}; {labelled} labelled predictions since it took over",
        newest,
        start,
    )


def _run_start(health: pd.DataFrame) -> str:
    """The oldest partition of the unbroken run of flagged partitions that ends with the newest one."""
    flagged = (health["drifted"].eq(True) | health["degraded"].eq(True)).to_numpy()
    start = len(flagged) - 1
    while start > 0 and flagged[start - 1]:
        start -= 1
    return str(health["partition"].iloc[start])


def _signals(row) -> str:
    parts = []
    if pd.notna(row.drift_share):
        parts.append(f"drift {row.drift_share:.0%}" + (" (drifted)" if row.drifted else ""))
    if pd.notna(row.degraded):
        parts.append(f"{row.metric} {row.metric_value:.3f}" + (" (degraded)" if row.degraded else ""))
    return "[" + (", ".join(parts) or "not judged yet") + "]"
