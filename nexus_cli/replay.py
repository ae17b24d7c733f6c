"""Plays monitored days the way dagster-daemon would: ingest a day with the `ingest` job, materialize its
monitoring, then tick the sensors with Dagster's own sensor daemon code over workspace.yaml's code location. Each
evaluation is recorded as a tick with its reason, the cursors persist in the instance, and the runs the sensors
request are their named jobs with the daemon's tags, executed in this process as they are submitted; so the
Dagster UI shows the story afterwards and a daemon started later (`make dev`) carries on from the same cursors.
`nexus demo` uses it to show the closed loop."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TextIO

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorType
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._serdes import ConfigurableClassData

from nexus_cli.processes import log_path
from nexus_cli.runs import materialize, run_job
from nexus_core.config import REPO_ROOT
from nexus_core.names import INGEST_JOB

MONITORING = ["batch_predictions", "ground_truth", "model_performance", "drift_report", "shadow_comparison"]
SENSOR_NAME = "dagster/sensor_name"  # the tag the sensor daemon puts on the runs it launches
ROUNDS = 3  # sensor iterations per day at most: a retrain that promotes is deployed on the same day
PACE = 1.05  # seconds between sensor iterations: the replay's sensors may tick once a second
_LOG = logging.getLogger("nexus.replay")


@dataclass
class DayOutcome:
    day: str | None
    monitoring: dg.ExecuteInProcessResult | None
    decisions: list[str] = field(default_factory=list)  # what the sensors decided and why
    runs: list[tuple[str, dg.DagsterRun]] = field(default_factory=list)  # (sensor, the run it requested)

    def run_of(self, sensor: str) -> dg.DagsterRun | None:
        """The last run `sensor` requested on this day, if any."""
        return next((run for name, run in reversed(self.runs) if name == sensor), None)

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
    """Use as a context manager: it holds the code location the sensors are evaluated in."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs = defs
        # The same storage, with runs launched synchronously in this process instead of queued for a daemon, and
        # their events kept for the UI, not printed (the replay reports each run in one line).
        ref = instance.get_ref()
        self.instance = dg.DagsterInstance.from_ref(
            ref._replace(
                settings={**ref.settings, "python_logs": {"python_log_level": "CRITICAL"}},
                run_coordinator_data=ConfigurableClassData(
                    "dagster._core.run_coordinator", "DefaultRunCoordinator", "{}"
                ),
                run_launcher_data=ConfigurableClassData(
                    "dagster._core.launcher.sync_in_memory_run_launcher", "SyncInMemoryRunLauncher", "{}"
                ),
            )
        )
        self._stack = ExitStack()
        self._reasons: dict[str, str] = {}  # each sensor's last reported skip reason
        self._last_round = 0.0

    def __enter__(self) -> Replay:
        # The code location of workspace.yaml, as the webserver and the daemon load it (so the UI finds these
        # ticks under the same origin), served with sensors that may tick as often as days are replayed.
        # What Dagster prints while sensors tick (the code server's output included) goes to a log file: the
        # replay reports each decision and run itself, and the ticks' and runs' logs are in the UI.
        self._log = self._stack.enter_context(log_path("replay").open("a"))
        self._stack.enter_context(_environment(NEXUS_SENSOR_INTERVAL_SECONDS="1"))
        with _output_to(self._log):
            self._workspace = self._stack.enter_context(
                WorkspaceProcessContext(self.instance, WorkspaceFileTarget([str(REPO_ROOT / "workspace.yaml")]))
            )
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def day(self, day: str) -> DayOutcome:
        """Ingest and monitor one day, then let the sensors act on it."""
        outcome = self.monitor(day)
        return self.act(outcome) if outcome.monitoring.success else outcome

    def monitor(self, day: str) -> DayOutcome:
        ingested = run_job(self.defs, self.instance, INGEST_JOB, partition_key=day)
        if not ingested.success:
            return DayOutcome(day, ingested)
        return DayOutcome(day, materialize(self.defs, self.instance, MONITORING, day))

    def act(self, outcome: DayOutcome | None = None) -> DayOutcome:
        """Tick every running sensor, until a round requests no run; record their decisions and runs."""
        outcome, started = outcome or DayOutcome(None, None), time.time()
        for _ in range(ROUNDS):
            time.sleep(max(0.0, self._last_round + PACE - time.time()))
            self._last_round, known = time.time(), set(self.instance.get_run_ids())
            with _output_to(self._log):
                list(execute_sensor_iteration(self._workspace, _LOG, None, None))
            new = [run for run in reversed(self.instance.get_runs(limit=50)) if run.run_id not in known]
            outcome.runs += [(run.tags.get(SENSOR_NAME, ""), run) for run in new]
            if not new:
                break
        outcome.decisions = self._decisions(since=started)
        return outcome

    def gate(self) -> dict:
        """What the latest gate decided: the champion_model value (`promoted`, `reason`, `version`)."""
        with _output_to(self._log):
            return self.defs.load_asset_value("champion_model", instance=self.instance)

    def _decisions(self, since: float) -> list[str]:
        """What each sensor decided since `since`: the runs it requested, its failures, and its last skip reason
        when that is new."""
        decisions = []
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            name = state.instigator_name
            ticks = self.instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
            for tick in reversed(ticks):
                if tick.run_keys:
                    decisions.append(f"{name}: requested {', '.join(tick.run_keys)}")
                elif tick.error:
                    decisions.append(f"{name}: FAILED {tick.error.message.strip()}")
            last = ticks[0].skip_reason if ticks else None
            if last and last != self._reasons.get(name):
                decisions.append(f"{name}: {last}")
                self._reasons[name] = last
        return decisions


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _output_to(log: TextIO) -> Iterator[None]:
    """Standard output and error, at the descriptors, so processes started meanwhile (the code server) write to
    `log` too."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    for fd in saved:
        os.dup2(log.fileno(), fd)
    try:
        yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
