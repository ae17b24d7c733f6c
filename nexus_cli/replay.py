"""Plays monitored days in-process the way dagster-daemon would: materialize a day's monitoring, tick the sensors,
and run what they request. `nexus demo` uses it to show the closed loop without a daemon."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from nexus_cli.runs import materialize, run_job

MONITORING = ["raw_data", "features", "batch_predictions", "ground_truth", "model_performance", "drift_report"]


@dataclass
class DayOutcome:
    day: str | None
    monitoring: dg.ExecuteInProcessResult | None
    decisions: list[str] = field(default_factory=list)  # what the sensors decided and why
    runs: dict[str, dg.ExecuteInProcessResult] = field(default_factory=dict)  # sensor name -> the run it requested

    def check(self, asset: str, name: str) -> dg.AssetCheckEvaluation:
        return next(
            e
            for e in self.monitoring.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey(asset) and e.check_name == name
        )

    @property
    def flagged(self) -> bool:
        return not (
            self.check("drift_report", "drift_share").passed
            and self.check("model_performance", "no_degradation").passed
        )


class Replay:
    """Sensors tick in this order after each day: retraining (then its run), then the champion alias (then its)."""

    SENSORS = ("retraining_sensor", "champion_alias_sensor")

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance = defs, instance
        self.cursors: dict[str, str | None] = dict.fromkeys(self.SENSORS)

    def day(self, day: str) -> DayOutcome:
        """Materialize one day's monitoring, then let the sensors act on it."""
        outcome = self.monitor(day)
        return self.act(outcome) if outcome.monitoring.success else outcome

    def monitor(self, day: str) -> DayOutcome:
        return DayOutcome(day, materialize(self.defs, self.instance, MONITORING, day))

    def act(self, outcome: DayOutcome | None = None) -> DayOutcome:
        """Tick each sensor once, record what it decided, and run what it requested."""
        outcome = outcome or DayOutcome(None, None)
        for name in self.SENSORS:
            result = self._tick(name)
            for event in result.asset_events:
                self.instance.report_runless_asset_event(event)
            if result.skip_reason and not result.run_requests and result.asset_events:
                outcome.decisions.append(f"{name}: {result.skip_reason.skip_message}")
            for request in result.run_requests:
                outcome.decisions.append(f"{name}: requested {request.run_key}")
                job = self.defs.resolve_sensor_def(name).job_name
                outcome.runs[name] = run_job(self.defs, self.instance, job, request.tags, request.run_config)
        return outcome

    def _tick(self, name: str) -> dg.SensorResult:
        sensor = self.defs.resolve_sensor_def(name)
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors[name], resources=self.defs.resources
        )
        result = sensor(context)
        if result.cursor is not None:
            self.cursors[name] = result.cursor
        return result
