"""Plays monitored days the way dagster-daemon would, with Dagster's own daemon code on a replayed clock: at the
close of each day the scheduler ticks `ingest_schedule`, the asset daemon ticks `monitoring_automation` (and the
backfill daemon runs what it requests at once), the freshness daemon judges the assets' freshness, and the sensor
daemon ticks the sensors; the runs they request wait in the run queue, and the queue's own daemon launches
them, executed in this process. Each evaluation is recorded as a tick with its reason, each run carries the tags of
what requested it, the cursors persist in the instance, so the Dagster UI shows the platform running itself and a
daemon started later (`make dev`) carries on from the same cursors. `nexus demo` uses it to show the closed loop."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TextIO
from unittest import mock

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.scheduler.instigation import InstigatorType
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.asset_daemon import AssetDaemon
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.freshness import FreshnessDaemon
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._scheduler.scheduler import launch_scheduled_runs
from dagster._serdes import ConfigurableClassData

from nexus_assets.partitions import Partitioning
from nexus_cli.processes import log_path
from nexus_core.config import REPO_ROOT

MONITORING = ["batch_predictions", "ground_truth", "model_performance", "drift_report", "shadow_comparison"]
SENSOR_NAME = "dagster/sensor_name"  # the tag the sensor daemon puts on the runs it launches
ROUNDS = 3  # sensor iterations per day at most: a retrain that promotes is deployed on the same day
PACE = 1.05  # seconds between sensor iterations: the replay's sensors may tick once a second
BACKFILL_ROUNDS = 10  # backfill daemon iterations at most per tick: one per layer of the graph it follows
AFTER_CLOSE = dt.timedelta(minutes=5)  # when in the next period a closed one is replayed
_LOG = logging.getLogger("nexus.replay")


@dataclass
class DayOutcome:
    day: str | None
    ingest: list[dg.DagsterRun] = field(default_factory=list)  # what the schedule launched (catch-up included)
    monitoring: list[dg.DagsterRun] = field(default_factory=list)  # what the automation launched
    checks: list[dg.AssetCheckEvaluation] = field(default_factory=list)  # of the monitoring runs
    decisions: list[str] = field(default_factory=list)  # what the sensors decided and why
    runs: list[tuple[str, dg.DagsterRun]] = field(default_factory=list)  # (sensor, the run it requested)

    @property
    def success(self) -> bool:
        """The day was ingested and monitored, and every run of it succeeded."""
        runs = self.ingest + self.monitoring
        return bool(self.ingest and self.monitoring) and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

    def run_of(self, sensor: str) -> dg.DagsterRun | None:
        """The last run `sensor` requested on this day, if any."""
        return next((run for name, run in reversed(self.runs) if name == sensor), None)

    def check(self, asset: str, name: str) -> dg.AssetCheckEvaluation:
        return next(e for e in self.checks if e.asset_key.path[-1] == asset and e.check_name == name)

    @property
    def flagged(self) -> bool:
        return not (
            self.check("drift_report", "drift_share").passed
            and self.check("model_performance", "no_degradation").passed
        )


class Replay:
    """Use as a context manager: it holds the code location the daemons evaluate. For time partitions, the clock
    starts just after the period of partition `after` closed (the last one already in); otherwise the daemons see
    the wall clock."""

    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        partitions: Partitioning | None = None,
        after: str | None = None,
    ) -> None:
        self.defs, self.partitions = defs, partitions
        # The same storage and run queue, with runs launched in this process instead of in a subprocess each,
        # and their events kept for the UI, not printed (the replay reports each run in one line).
        ref = instance.get_ref()
        queue = ref.run_coordinator_data
        if queue is None or queue.class_name != "QueuedRunCoordinator":
            queue = ConfigurableClassData("dagster._core.run_coordinator", "QueuedRunCoordinator", "{}")
        self.instance = dg.DagsterInstance.from_ref(
            ref._replace(
                settings={**ref.settings, "python_logs": {"python_log_level": "CRITICAL"}},
                run_coordinator_data=queue,
                run_launcher_data=ConfigurableClassData(
                    "dagster._core.launcher.sync_in_memory_run_launcher", "SyncInMemoryRunLauncher", "{}"
                ),
            )
        )
        self._clock = _Clock(partitions.closes(after) + AFTER_CLOSE if partitions and after else None)
        self._stack = ExitStack()
        self._reasons: dict[str, str] = {}  # each sensor's last reported skip reason
        self._last_round = 0.0

    def __enter__(self) -> Replay:
        # The code location of workspace.yaml, as the webserver and the daemon load it (so the UI finds these
        # ticks under the same origin), served with sensors that may tick as often as days are replayed.
        # What Dagster prints while it ticks and runs (the code server's output included) goes to a log file: the
        # replay reports each decision and run itself, and the ticks' and runs' logs are in the UI.
        self._log = self._stack.enter_context(log_path("replay").open("a"))
        self._stack.enter_context(_environment(NEXUS_SENSOR_INTERVAL_SECONDS="1"))
        with _output_to(self._log):
            self._workspace = self._stack.enter_context(
                WorkspaceProcessContext(self.instance, WorkspaceFileTarget([str(REPO_ROOT / "workspace.yaml")]))
            )
            self._queue = self._stack.enter_context(QueuedRunCoordinatorDaemon(interval_seconds=1))
            self._assets = self._stack.enter_context(
                AssetDaemon(settings=self.instance.get_auto_materialize_settings(), pre_sensor_interval_seconds=30)
            )
            self._freshness = self._stack.enter_context(FreshnessDaemon())
        if self._clock.start is not None:
            self._start_over()
        # The schedule and the automation start where the replay starts, as a daemon started then would.
        self._tick(self._schedules)
        self._tick(self._automation)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def day(self, day: str) -> DayOutcome:
        """Ingest and monitor one day (a partition), then let the sensors act on it."""
        outcome = self.monitor(day)
        return self.act(outcome) if outcome.success else outcome

    def monitor(self, day: str) -> DayOutcome:
        """Move the clock past the close of `day`: the schedule ingests it (and whatever it missed before), then the
        automation materializes what follows."""
        self._clock.move_to(self.partitions.closes(day) + AFTER_CLOSE)
        outcome = DayOutcome(day, self._tick(self._schedules))
        if outcome.ingest:
            outcome.monitoring = self._tick(self._automation)
            outcome.checks = self.checks(outcome.monitoring)
        with _output_to(self._log):  # on the wall clock, which the materializations' times are on
            list(self._freshness.run_iteration(self._workspace))
        return outcome

    def checks(self, runs: list[dg.DagsterRun]) -> list[dg.AssetCheckEvaluation]:
        """The check results of `runs`."""
        return [
            entry.dagster_event.event_specific_data
            for run in runs
            for entry in self.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]

    def act(self, outcome: DayOutcome | None = None) -> DayOutcome:
        """Tick every running sensor, then the automation, until a round requests no run; record their decisions
        and runs (files that arrived are ingested by `source_files_sensor` and followed by the automation here)."""
        outcome, started = outcome or DayOutcome(None), self._clock.now()
        for _ in range(ROUNDS):
            time.sleep(max(0.0, self._last_round + PACE - time.time()))
            self._last_round = time.time()
            new = self._tick(self._sensors)
            new += self._tick(self._automation) if new else []  # what follows the runs the sensors requested
            outcome.runs += [(run.tags.get(SENSOR_NAME, ""), run) for run in new]
            if not new:
                break
        outcome.decisions = self._decisions(since=started)
        return outcome

    def gate(self) -> dict:
        """What the latest gate decided: the champion_model value (`promoted`, `reason`, `version`)."""
        with _output_to(self._log):
            return self.defs.load_asset_value("champion_model", instance=self.instance)

    def _tick(self, evaluate: Callable[[], object]) -> list[dg.DagsterRun]:
        """One evaluation on the replayed clock, then the run queue drained on the wall clock (the runs' events
        carry the time they really ran); the runs it requested, oldest first, as they ended."""
        known = set(self.instance.get_run_ids())
        with _output_to(self._log):
            with self._clock:
                result = evaluate()
                if isinstance(result, Iterator):
                    list(result)
            self._drain()
            # The automation requests several partitions at once as a backfill: each iteration of the backfill
            # daemon submits the runs whose upstream is in.
            for _ in range(BACKFILL_ROUNDS):
                if not self.instance.get_backfills(status=BulkActionStatus.REQUESTED, limit=1):
                    break
                list(execute_backfill_iteration(self._workspace, _LOG))
                self._drain()
        return [run for run in reversed(self.instance.get_runs(limit=200)) if run.run_id not in known]

    def _drain(self) -> None:
        """Launch the queued runs, as the run queue's daemon does, until none is left or the queue's limits hold
        the rest (they wait for the daemon)."""
        queued = self._queued()
        while queued:
            list(self._queue.run_iteration(self._workspace))
            left = self._queued()
            if left >= queued:
                break
            queued = left

    def _queued(self) -> int:
        return self.instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))

    def _sensors(self) -> Iterator:
        return execute_sensor_iteration(self._workspace, _LOG, None, None)

    def _schedules(self) -> Iterator:
        return launch_scheduled_runs(self._workspace, _LOG, self._clock.now_utc(), iteration_times={})

    def _automation(self) -> None:
        self._assets._run_iteration_impl(self._workspace, None, {}, {})

    def _start_over(self) -> None:
        """A replay cannot move the clock back: schedules and sensors that ticked after the start (an earlier
        replay of the same days) start over, their ticks and cursors forgotten."""
        now = self._clock.now()
        for state in self.instance.all_instigator_state():
            ticks = self.instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            if ticks and ticks[0].timestamp > now:
                self.instance.purge_ticks(state.instigator_origin_id, state.selector_id, before=time.time() + 1e9)
                self.instance.delete_instigator_state(state.instigator_origin_id, state.selector_id)

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


class _Clock:
    """The time Dagster's daemons read (through `dagster._time`, whose hooks exist for this): a replayed moment,
    running on with the wall clock from when it was set; or the wall clock itself without a start."""

    def __init__(self, start: dt.datetime | None) -> None:
        self.start = start
        self._at, self._wall = (start.timestamp() if start else None), time.time()
        self._patches = ExitStack()

    def now(self) -> float:
        return time.time() if self._at is None else self._at + time.time() - self._wall

    def now_utc(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), dt.UTC)

    def move_to(self, moment: dt.datetime) -> None:
        """Forward to `moment` (never back)."""
        if self._at is not None:
            self._at, self._wall = max(moment.timestamp(), self.now()), time.time()

    def __enter__(self) -> None:
        if self._at is not None:
            self._patches.enter_context(mock.patch("dagster._time._mockable_get_current_timestamp", self.now))
            self._patches.enter_context(mock.patch("dagster._time._mockable_get_current_datetime", self.now_utc))

    def __exit__(self, *exc) -> None:
        self._patches.close()


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
