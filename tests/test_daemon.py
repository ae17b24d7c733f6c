"""The daemon alone moves the platform: `dagster-daemon` over a temporary instance, on a clock the test moves a
day at a time, ingests each closed day, monitors it, reads its late labels again, retrains when drift persists and
deploys each new champion, as schedule and sensor ticks and the runs they launched; nothing is submitted by hand."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import dagster as dg
import pytest

from nexus_cli.runs import dagster_instance, materialize
from nexus_core.config import REPO_ROOT
from nexus_core.names import DEPLOY_JOB, INGEST_JOB, LABELS_JOB, PARTITION, TRAINING_CHAIN, TRAINING_JOB
from nexus_defs.definitions import build_definitions
from tests.conftest import materialize_window

DRIFT = {"start_date": "2026-01-07", "features": ["monthly_charges", "support_calls"], "strength": 3.0}
TIMEOUT = 240  # seconds for each step the daemon takes


class Clock:
    """The daemon's time, set by the test and running RATE times as fast as the wall clock from there."""

    RATE = 20  # the sensors' minimum intervals (30-60 s) pass in seconds; a day still takes over an hour

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, moment: dt.datetime) -> None:
        staged = self.path.with_suffix(".new")
        staged.write_text(json.dumps({"at": moment.timestamp(), "wall": time.time(), "rate": self.RATE}))
        staged.replace(self.path)


@pytest.fixture
def daemon(write_config, tmp_path, monkeypatch):
    """A champion trained on days 1-6, then dagster-daemon started over the instance at noon of day 7."""
    config = write_config(
        {
            "dataset": {"source": {"drift": DRIFT}},
            "monitoring": {"retraining": {"min_labelled_rows": 300, "consecutive_partitions": 2}},
        }
    )
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    instance = dagster_instance()
    defs = build_definitions(config)
    materialize_window(defs, instance)
    assert materialize(defs, instance, TRAINING_CHAIN).success

    clock = Clock(tmp_path / "clock")
    clock.set(dt.datetime(2026, 1, 7, 12, tzinfo=dt.UTC))
    log, before = tmp_path / "daemon.log", {run.run_id for run in instance.get_runs()}
    command = [sys.executable, str(Path(__file__).with_name("clocked_daemon.py")), str(clock.path)]
    command += ["run", "-w", str(REPO_ROOT / "workspace.yaml")]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    try:
        yield instance, clock, log, before
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(what: str, done: Callable[[], bool], instance: dg.DagsterInstance, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if done():
            return
        failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert not failed, f"run {failed[0].job_name} {failed[0].run_id} failed while waiting for {what}"
        time.sleep(2)
    runs = [(r.job_name, r.status.value, r.tags.get(PARTITION)) for r in instance.get_runs()]
    pytest.fail(f"no {what} after {TIMEOUT} s; runs: {runs}\ndaemon log:\n{log.read_text()[-4000:]}")


def succeeded(instance: dg.DagsterInstance, job: str, **tags: str) -> list:
    return instance.get_runs(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS], tags=tags))


def monitored(instance: dg.DagsterInstance, day: str) -> bool:
    return all(
        day in instance.get_materialized_partitions(dg.AssetKey(name))
        for name in ("batch_predictions", "ground_truth", "model_performance", "drift_report")
    )


def test_the_daemon_alone_ingests_monitors_retrains_and_deploys_day_by_day(daemon):
    instance, clock, log, before = daemon
    version = "nexus/model_version"
    wait_for("the deploy of version 1", lambda: succeeded(instance, DEPLOY_JOB, **{version: "1"}), instance, log)
    for day in ("2026-01-07", "2026-01-08"):  # each day closes, then the daemon takes it from there
        clock.set(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(days=1, seconds=30))
        ingested = partial(succeeded, instance, INGEST_JOB, **{PARTITION: day})
        wait_for(f"the ingestion of {day}", ingested, instance, log)
        wait_for(f"the monitoring of {day}", partial(monitored, instance, day), instance, log)
    relabelled = partial(succeeded, instance, LABELS_JOB, **{PARTITION: "2026-01-07"})
    wait_for("the late labels of 2026-01-07", relabelled, instance, log)
    # labels arrive two days late: 2026-01-07 is first judged without them, then read again once they are known
    history = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ground_truth"), asset_partitions=["2026-01-07"]),
        limit=10,
        ascending=True,
    ).records
    seen = [
        (r.asset_materialization.metadata["as_of"].value, r.asset_materialization.metadata["pending_labels"].value)
        for r in history
    ]
    assert seen == [("2026-01-08", 300), ("2026-01-09", 0)], seen
    wait_for("a retrain", partial(succeeded, instance, TRAINING_JOB), instance, log)
    wait_for("the deploy of version 2", lambda: succeeded(instance, DEPLOY_JOB, **{version: "2"}), instance, log)

    launched = [run for run in instance.get_runs() if run.run_id not in before]
    unattended = [r for r in launched if not ({"dagster/schedule_name", "dagster/sensor_name"} & set(r.tags))]
    assert not unattended, f"runs nobody's tick launched: {[r.job_name for r in unattended]}"
    ticks = _ticks(instance)
    assert ticks["ingest_schedule"]["SUCCESS"] == 2  # 2026-01-07 and 2026-01-08
    for name in ("monitoring_automation", "late_labels_sensor", "retraining_sensor"):
        assert ticks[name]["SUCCESS"] >= 1, (name, ticks[name])
    assert ticks["champion_alias_sensor"]["SUCCESS"] == 2  # version 1, then version 2
    assert ticks["champion_alias_sensor"]["SKIPPED"] >= 1  # the reasons are on the skipped ticks
    skipped = _skip_reasons(instance, "champion_alias_sensor")
    assert any("unchanged" in reason for reason in skipped), skipped


def _ticks(instance: dg.DagsterInstance) -> dict[str, Counter]:
    """How many ticks of each status every schedule and sensor recorded."""
    return {
        state.instigator_name: Counter(
            tick.status.value for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id)
        )
        for state in instance.all_instigator_state()
    }


def _skip_reasons(instance: dg.DagsterInstance, name: str) -> list[str]:
    [state] = [s for s in instance.all_instigator_state() if s.instigator_name == name]
    return [t.skip_reason or "" for t in instance.get_ticks(state.instigator_origin_id, state.selector_id)]
