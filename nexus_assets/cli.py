"""The `nexus` command: run the demo on the embedded default and manage the platform by hand."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
import urllib.request

import dagster as dg
import pandas as pd

from nexus_assets.definitions import build_definitions
from nexus_assets.features.transform import model_inputs
from nexus_assets.lib import stack as lib_stack
from nexus_assets.lib.processes import running
from nexus_assets.lib.runs import dagster_instance, materialize
from nexus_assets.monitoring.retraining import TRAINING_CHAIN
from nexus_assets.replay import DayOutcome, Replay
from nexus_assets.training import control
from nexus_resources.config import REPO_ROOT, ConfigError, NexusConfig, load_config
from nexus_resources.settings import nexus_home
from serving import serve_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nexus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="materialize the asset graph over the demo window")
    demo.add_argument("--days", type=int, help="how many daily partitions to train on (default: the training window)")
    demo.add_argument(
        "--monitor-days", type=int, default=14, help="days to monitor after training, sensors acting (default 14)"
    )
    commands.add_parser("status", help="champion, challenger and previous champion, and recent decisions")
    promote = commands.add_parser("promote", help="move the champion alias to a version by hand")
    promote.add_argument("version")
    promote.add_argument("--reason", default="promoted by hand")
    rollback = commands.add_parser("rollback", help="give the champion alias back to the previous champion")
    rollback.add_argument("--reason", default="rolled back by hand")
    trace = commands.add_parser("trace", help="the lineage of a stored prediction or a model version")
    what = trace.add_mutually_exclusive_group(required=True)
    what.add_argument("prediction_id", nargs="?", help="the id of a stored prediction (e.g. a customer_id)")
    what.add_argument("--version", help="a registered model version")
    exporter = commands.add_parser("exporter", help="Prometheus metrics of drift, performance and predictions")
    exporter.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    exporter.add_argument("--port", type=int, default=9108)
    stack = commands.add_parser("stack", help="the production stack as local processes, until Ctrl-C (no Docker)")
    stack.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        help="an admin URL of the PostgreSQL server to create the stack's databases on",
    )
    args = parser.parse_args(argv)
    handlers = {
        "demo": _demo,
        "status": control.status,
        "promote": control.promote,
        "rollback": control.rollback,
        "trace": control.trace,
        "exporter": control.exporter,
        "stack": lib_stack.run,
    }
    try:
        config = load_config()
        return handlers[args.command](config, args)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except dg.Failure as exc:
        print(f"error: {exc.description}", file=sys.stderr)
        return 1


def _demo(config: NexusConfig, args: argparse.Namespace) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # the demo prints its own progress
    defs = build_definitions(config)
    instance = dagster_instance()
    days = _demo_days(config, args.days or config.training.window_days)
    print(f"NexusML demo: dataset {config.dataset.name!r}, {len(days)} daily partitions, storage in {nexus_home()}")
    started = time.monotonic()
    for number, day in enumerate(days, 1):
        result = materialize(defs, instance, ["raw_data", "features"], day)
        if not _report(result, f"[{number}/{len(days)}] {day} raw_data, features"):
            return 1
    trained = materialize(defs, instance, TRAINING_CHAIN)
    if not _report(trained, ", ".join(TRAINING_CHAIN)):
        return 1
    replay = Replay(defs, instance)
    # the champion alias sensor sees the first champion and deploys it
    if not _show(replay.act()):
        return 1
    control.status(config, args)
    if config.partitioned and not _monitor(config, replay, days, args.monitor_days):
        return 1
    data = trained.output_for_node("training_dataset")
    _serve_once(model_inputs(data.holdout.head(1), data.spec).astype(object).iloc[0].to_dict())
    print(
        f"\nDone in {time.monotonic() - started:.0f} s. Where to look:\n"
        "  make dev     Dagster UI on http://127.0.0.1:3000: lineage, checks, drift, the gate, the retrain's reasons\n"
        "  make mlflow  MLflow UI on http://127.0.0.1:5000: runs, registered versions and aliases\n"
        "  make serve   the champion on http://127.0.0.1:3001/predict, following the champion alias\n"
        "  .venv/bin/nexus status | promote VERSION | rollback | trace PREDICTION_ID"
    )
    return 0


def _monitor(config: NexusConfig, replay: Replay, trained: list[str], count: int) -> bool:
    """Monitor the days after the training window, with the sensors acting after each day as the daemon would."""
    days = _demo_days(config, len(trained) + count)[len(trained) :]
    if config.dataset.end_date:
        days = [day for day in days if dt.date.fromisoformat(day) < config.dataset.end_date]
    print(f"\nMonitoring {len(days)} more days with the champion; the sensors act after each day:")
    for number, day in enumerate(days, 1):
        outcome = replay.monitor(day)
        if not _report(outcome.monitoring, f"[{number}/{len(days)}] {day} monitored"):
            return False
        for asset, check in (("drift_report", "drift_share"), ("model_performance", "no_degradation")):
            evaluation = outcome.check(asset, check)
            print(f"    {'WARN' if not evaluation.passed else 'ok  '} {asset}: {evaluation.description}")
        if not _show(replay.act(outcome)):
            return False
    return True


def _show(outcome: DayOutcome) -> bool:
    """How the runs the sensors requested went (the sensors log their decisions and reasons themselves)."""
    for sensor, run in outcome.runs.items():
        if not _report(run, f"    run requested by {sensor}"):
            return False
        if sensor == "retraining_sensor":
            gate = run.output_for_node("champion_model")
            print(f"    gate: {'PROMOTED' if gate['promoted'] else 'kept the champion'}: {gate['reason']}")
        else:
            print(f"    deployed version {run.dagster_run.tags['nexus/model_version']} (Bento built)")
    return True


def _serve_once(record: dict) -> None:
    """Start the service, ask it for one prediction, show the curl that does the same, and stop it."""
    port = int(os.environ.get("NEXUS_SERVING_PORT", "3001"))
    command = serve_command(port)
    body = json.dumps({"records": [{k: None if pd.isna(v) else v for k, v in record.items()}]})
    with running(command, port, "/readyz", cwd=REPO_ROOT) as url:
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(f"{url}/predict", data=body.encode(), headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            print(f"\nThe champion answers on POST {url}/predict:\n{response.read().decode()}")
    print(
        f"\nServe it yourself with `make serve`, then:\n  curl -s -X POST {url}/predict "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def _demo_days(config: NexusConfig, count: int) -> list[str | None]:
    if not config.partitioned:
        return [None]
    start = config.dataset.start_date
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(count)]


def _report(result: dg.ExecuteInProcessResult, what: str) -> bool:
    if result.success:
        print(f"{what}: ok")
        return True
    print(f"{what}: FAILED", file=sys.stderr)
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            print(f"  check {evaluation.check_name}: {evaluation.description}", file=sys.stderr)
    for event in result.get_step_failure_events():
        print(f"  step {event.step_key}: {event.step_failure_data.error.message.strip()}", file=sys.stderr)
    print("The data stays stored for inspection; fix the source or nexus.yaml and run again.", file=sys.stderr)
    return False
