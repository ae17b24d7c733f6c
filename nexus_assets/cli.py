"""The `nexus` command: run the demo on the embedded default and manage the platform by hand."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd

from nexus_assets.definitions import build_definitions
from nexus_assets.features.transform import model_inputs
from nexus_assets.lib.processes import running
from nexus_assets.training import control
from nexus_resources.config import REPO_ROOT, ConfigError, NexusConfig, load_config
from nexus_resources.settings import nexus_home
from serving import serve_command

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
MONITORING = ["raw_data", "features", "batch_predictions", "ground_truth", "model_performance", "drift_report"]
MONITORED_DAYS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nexus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="materialize the asset graph over the demo window")
    demo.add_argument("--days", type=int, help="how many daily partitions (default: the training window)")
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
    args = parser.parse_args(argv)
    handlers = {
        "demo": _demo,
        "status": control.status,
        "promote": control.promote,
        "rollback": control.rollback,
        "trace": control.trace,
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


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance: `$DAGSTER_HOME`, or `dagster/` in the embedded folder."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(nexus_home() / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.get()


def materialize(
    defs: dg.Definitions, instance: dg.DagsterInstance, selection: list[str], partition_key: str | None = None
) -> dg.ExecuteInProcessResult:
    """One in-process run of `selection`, recorded in `instance` so the Dagster UI shows it."""
    return dg.materialize(
        list(defs.assets or []),
        selection=selection,
        partition_key=partition_key,
        resources=defs.resources,
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
    )


def _demo(config: NexusConfig, args: argparse.Namespace) -> int:
    defs = build_definitions(config)
    instance = dagster_instance()
    days = _demo_days(config, args.days or config.training.window_days)
    print(f"NexusML demo: dataset {config.dataset.name!r}, {len(days)} daily partitions, storage in {nexus_home()}")
    started = time.monotonic()
    for number, day in enumerate(days, 1):
        result = materialize(defs, instance, ["raw_data", "features"], day)
        if not _report(result, f"[{number}/{len(days)}] {day} raw_data, features"):
            return 1
    models = ["training_dataset", "candidate_models", "challenger_model", "champion_model", "serving_bento"]
    if not _report(materialize(defs, instance, models), ", ".join(models)):
        return 1
    control.status(config, args)
    if config.partitioned:
        print("\nMonitoring the next days with the champion:")
        for day in _demo_days(config, len(days) + MONITORED_DAYS)[len(days) :]:
            result = materialize(defs, instance, MONITORING, day)
            if not _report(result, f"{day} {', '.join(MONITORING)}"):
                return 1
            for check in result.get_asset_check_evaluations():
                if check.asset_key != dg.AssetKey("raw_data"):
                    print(f"  {check.asset_key.to_user_string()}.{check.check_name}: {check.description}")
    data = defs.load_asset_value("training_dataset", instance=instance)
    _serve_once(model_inputs(data.holdout.head(1), data.spec).astype(object).iloc[0].to_dict())
    print(
        f"\nDone in {time.monotonic() - started:.0f} s. Where to look:\n"
        "  make dev     Dagster UI on http://127.0.0.1:3000: lineage, metadata, checks, the gate's decision\n"
        "  make mlflow  MLflow UI on http://127.0.0.1:5000: runs, registered versions and aliases\n"
        "  make serve   the champion on http://127.0.0.1:3001/predict, following the champion alias\n"
        "  .venv/bin/nexus status | promote VERSION | rollback | trace PREDICTION_ID"
    )
    return 0


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
