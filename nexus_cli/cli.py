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
from pathlib import Path

import dagster as dg
import pandas as pd

from nexus_assets.partitions import partitioning
from nexus_cli import control
from nexus_cli import stack as lib_stack
from nexus_cli.dev import dev as dev_server
from nexus_cli.processes import log_path, running, serve_command, served_bento, venv_bin
from nexus_cli.replay import DayOutcome, Replay
from nexus_cli.runs import dagster_instance, ingest, run_job
from nexus_core.config import REPO_ROOT, ConfigError, NexusConfig, config_path, load_config
from nexus_core.features import model_inputs
from nexus_core.names import (
    CHAMPION_ALIAS_SENSOR,
    FILES_PARTITIONS,
    LATE_LABELS_SENSOR,
    MODEL_VERSION,
    MONITORING_AUTOMATION,
    PARTITION,
    RETRAINING_SENSOR,
    TRAINING_CHAIN,
    TRAINING_JOB,
)
from nexus_core.settings import load_settings
from nexus_defs.component import dataset_config
from nexus_defs.definitions import build_definitions
from nexus_defs.scaffold import new_dataset
from nexus_sensors.source_files import new_files
from serving import SERVICE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    # In a deployment of many datasets (NEXUS_DEFS), the commands about one model name it.
    one = argparse.ArgumentParser(add_help=False)
    one.add_argument("--model", help="the dataset (or registered model) of the NEXUS_DEFS deployment this is about")
    demo = commands.add_parser("demo", help="materialize the asset graph over the demo window")
    demo.add_argument(
        "--days",
        type=int,
        help="how many partitions to train on (default: training.window_partitions, else the first 70%% of the range)",
    )
    demo.add_argument(
        "--monitor-days",
        type=int,
        default=14,
        help="partitions to monitor after training, sensors acting (default 14)",
    )
    commands.add_parser(
        "status", parents=[one], help="champion, challenger and previous champion, and recent decisions"
    )
    promote = commands.add_parser("promote", parents=[one], help="move the champion alias to a version by hand")
    promote.add_argument("version")
    promote.add_argument("--reason", default="promoted by hand")
    rollback = commands.add_parser(
        "rollback", parents=[one], help="give the champion alias back to the previous champion"
    )
    rollback.add_argument("--reason", default="rolled back by hand")
    trace = commands.add_parser("trace", parents=[one], help="the lineage of a stored prediction or a model version")
    what = trace.add_mutually_exclusive_group(required=True)
    what.add_argument("prediction_id", nargs="?", help="the id of a stored prediction (e.g. a customer_id)")
    what.add_argument("--version", help="a registered model version")
    exporter = commands.add_parser(
        "exporter", parents=[one], help="Prometheus metrics of drift, performance and predictions"
    )
    exporter.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    exporter.add_argument("--port", type=int, default=9108)
    serve = commands.add_parser(
        "serve",
        parents=[one],
        help="serve the newest serving Bento (built as `base` first if the store has none), in the foreground",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, help="default NEXUS_SERVING_PORT (3001)")
    serve.add_argument("--source", action="store_true", help="serve the checkout's code instead (development)")
    stack = commands.add_parser("stack", help="the production stack as local processes, until Ctrl-C (no Docker)")
    stack.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        help="an admin URL of the PostgreSQL server to create the stack's databases on",
    )
    link = commands.add_parser("open", help="an MLflow link from Dagster's metadata on the MLflow UI as it is now")
    link.add_argument("link", help="the link (its address may be an old one), models:/NAME/VERSION or runs:/RUN_ID")
    dev = commands.add_parser("dev", help="the Dagster UI and daemon over the store the demo uses, until stopped")
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    dev.add_argument("--port", type=int, default=3000)
    new = commands.add_parser("new", help="write a new dataset's config, its roles inferred from its data")
    new.add_argument("name", help="the dataset's name (also its asset key prefix and group)")
    new.add_argument("--data", required=True, help="its CSV or Parquet file")
    new.add_argument("--target", required=True, help="the column to predict")
    new.add_argument("--folder", help="where the config goes (default: NEXUS_DEFS, else datasets/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "demo": _demo,
        "status": control.status,
        "promote": control.promote,
        "rollback": control.rollback,
        "trace": control.trace,
        "exporter": control.exporter,
        "serve": _serve,
        "stack": lib_stack.run,
    }
    try:
        if args.command == "new":
            return _new(args)
        if args.command == "dev":
            dev_server(args)
        if args.command == "open":
            return control.open_link(args)
        model = getattr(args, "model", None)  # `demo` and `stack` are about one dataset alone
        config = dataset_config(os.environ.get("NEXUS_DEFS", ""), model) if model else load_config()
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
    partitions = partitioning(config)
    keys = partitions.keys()
    trained_on = keys[: _training_count(config, keys, args.days)]
    print(f"NexusML demo: dataset {config.dataset.name!r} from {config.path}, storage in {load_settings().home}")
    print(f"partitions: {partitions.note}; training on {len(trained_on)} of {len(keys)}")
    started = time.monotonic()
    if partitions.cadence == "files":  # the history's files; the later ones arrive through source_files_sensor
        history = [key for key in new_files(config, instance) if key in trained_on]
        instance.add_dynamic_partitions(config.named(FILES_PARTITIONS), history)
    # History as one run, as a backfill; a partition whose checks fail blocks itself alone, as under the daemon
    ingested = ingest(defs, instance, trained_on)
    span = f"{trained_on[0]} to {trained_on[-1]}" if len(trained_on) > 1 else trained_on[0] or "the table"
    _report(instance, ingested.runs[0], f"{span}: raw_data, features")
    for run_id in ingested.runs[1:]:
        _report(instance, run_id, "    features of the partitions that passed")
    blocked = list(ingested.blocked)
    if len(blocked) == len(trained_on):
        return 1
    trained = run_job(defs, instance, TRAINING_JOB)
    if not _report(instance, trained.run_id, ", ".join(TRAINING_CHAIN)):
        return 1
    gate = trained.output_for_node("champion_model")
    print(f"gate: {'PROMOTED' if gate['promoted'] else 'not promoted'}: {gate['reason']}")
    served = gate["version"] is not None
    if not served:
        print(
            "\nNo candidate beat the baseline on the holdout or over the history: nothing to serve. The comparison is "
            "in the Dagster UI (make dev, asset champion_model) and every candidate's run in MLflow (make mlflow)."
        )
        if not partitions.partitioned:
            return 0
    monitored = (
        _unmonitored(config, instance, keys[len(trained_on) :])[: args.monitor_days] if partitions.periods else []
    )
    after = keys[keys.index(monitored[0]) - 1] if monitored else trained_on[-1]
    with Replay(defs, instance, partitions, after=after if partitions.periods else None) as replay:
        # The champion alias sensor sees the first champion and deploys it; files that arrived after the history
        # are ingested by source_files_sensor and followed by monitoring_automation.
        if (served or partitions.cadence == "files") and not _show(replay, replay.act()):
            return 1
        if served:
            control.status(config, args)
        if not partitions.partitioned:
            print(f"\nNot monitoring: {partitions.note}.")
        elif partitions.periods:
            left_out = _monitor(replay, monitored, served)
            if left_out is None:
                return 1
            blocked += left_out
    if not served:
        return 0
    data = trained.output_for_node("training_dataset")
    row = data.holdout.loc[[data.holdout[data.spec.columns].isna().sum(axis=1).idxmin()]]  # the most complete
    record = model_inputs(row, data.spec).astype(object).iloc[0].to_dict()
    if config.dataset.id_column:
        record = {config.dataset.id_column: row[config.dataset.id_column].iloc[0], **record}
    if not _serve_once(record):
        return 1
    if blocked:
        print(
            f"\n{len(blocked)} partition(s) blocked by their checks, their rows kept: {', '.join(blocked)}; "
            "fix the source and materialize them again (make dev, asset raw_data)"
        )
    print(
        f"\nDone in {time.monotonic() - started:.0f} s. Where to look:\n"
        "  make dev     Dagster UI on http://127.0.0.1:3000: lineage, checks, drift, the gate, the retrain's reasons\n"
        "  make mlflow  MLflow UI on http://127.0.0.1:5000: runs, registered versions and aliases\n"
        "  make serve   the newest Bento on http://127.0.0.1:3001/predict, following the champion alias\n"
        "  .venv/bin/nexus status | promote VERSION | rollback | trace PREDICTION_ID"
    )
    return 0


def _training_count(config: NexusConfig, keys: list, requested: int | None) -> int:
    """The first partitions train; the rest are monitored as if they arrived later."""
    if requested or config.training.window_partitions:
        return min(len(keys), requested or config.training.window_partitions)
    return min(len(keys), max(3, round(len(keys) * 0.7)))


def _monitor(replay: Replay, keys: list[str], served: bool) -> list[str] | None:
    """Monitor the partitions after the training window, with the sensors acting after each one as the daemon
    would; the partitions that were blocked, or None when a run the sensors requested failed."""
    if not keys:
        print("\nNothing left to monitor: every partition of the range was used for training.")
        return []
    against = "with the champion" if served else "against the training data (no champion to score with)"
    print(
        f"\nMonitoring {len(keys)} more partitions {against}, on a replayed clock: at each one's close "
        "ingest_schedule ingests it, monitoring_automation follows it, then the sensors act:"
    )
    blocked = []
    for number, key in enumerate(keys, 1):
        outcome = replay.monitor(key)
        if not _report_day(replay.instance, outcome, f"[{number}/{len(keys)}] {key}"):
            blocked.append(key)
            continue
        _print_checks(outcome.checks)
        if not _show(replay, replay.act(outcome)):
            return None
    return blocked


def _report_day(instance: dg.DagsterInstance, outcome: DayOutcome, what: str) -> bool:
    """One line for the day's runs; a failed run's checks and reasons as `_report` shows them."""
    caught_up = [run.tags[PARTITION] for run in outcome.ingest if run.tags.get(PARTITION) != outcome.day]
    if caught_up:
        print(f"{what}: ingest_schedule caught up on {', '.join(caught_up)} first")
    if not outcome.ingest:
        print(f"{what}: ingest_schedule requested nothing (see its ticks in the Dagster UI)", file=sys.stderr)
        return False
    failed = [run for run in outcome.ingest + outcome.monitoring if run.status != dg.DagsterRunStatus.SUCCESS]
    if not failed and outcome.monitoring:
        print(f"{what}: ingested by ingest_schedule, monitored by monitoring_automation: ok")
        return True
    for run in failed:
        _report(instance, run.run_id, f"{what} {run.job_name} run")
    if not failed:
        print(f"{what}: ingested; monitoring_automation requested nothing (its blocking checks?)", file=sys.stderr)
    return False


def _unmonitored(config: NexusConfig, instance: dg.DagsterInstance, keys: list[str]) -> list[str]:
    """The partitions of `keys` the store has not ingested: a demo run again on the same store carries on after the
    days an earlier one played (a replayed clock cannot go back over them)."""
    held = instance.get_materialized_partitions(dg.AssetKey(config.asset("raw_data")))
    left = [key for key in keys if key not in held]
    if len(left) < len(keys):
        print(f"the store already holds {len(keys) - len(left)} partition(s) after the training window: carrying on")
    return left


def _show(replay: Replay, outcome: DayOutcome) -> bool:
    """What the sensors decided, and how the runs they requested went."""
    for decision in outcome.decisions:
        if not decision.startswith(LATE_LABELS_SENSOR):  # its runs' judgements are printed below instead
            print(f"    {decision}")
    for sensor, run in outcome.runs:
        if sensor == LATE_LABELS_SENSOR and run.status == dg.DagsterRunStatus.SUCCESS:  # one line: the judgement
            [evaluation] = replay.checks([run])
            _print_check(evaluation, f"model_performance of {run.tags[PARTITION]}")
            continue
        partition = f" for {run.tags[PARTITION]}" if PARTITION in run.tags else ""
        if not _report(replay.instance, run.run_id, f"    run requested by {sensor}{partition}"):
            return False
        if sensor == RETRAINING_SENSOR:
            gate = replay.gate()
            print(f"    gate: {'PROMOTED' if gate['promoted'] else 'kept the champion'}: {gate['reason']}")
        elif sensor == CHAMPION_ALIAS_SENSOR:
            print(f"    deployed version {run.tags[MODEL_VERSION]} (Bento built)")
        elif sensor == MONITORING_AUTOMATION:
            _print_checks(replay.checks([run]))
    return True


def _print_checks(evaluations: list[dg.AssetCheckEvaluation]) -> None:
    """The monitoring checks of a partition or more: drift, and performance once labels have arrived."""
    for evaluation in evaluations:
        asset = evaluation.asset_key.path[-1]
        if (asset, evaluation.check_name) in (("drift_report", "drift_share"), ("model_performance", "no_degradation")):
            _print_check(evaluation, f"{asset} of {evaluation.partition}")


def _print_check(evaluation: dg.AssetCheckEvaluation, what: str) -> None:
    """One line per check; performance only once labels have arrived (they come days after the predictions)."""
    if evaluation.check_name == "no_degradation" and not evaluation.metadata["labelled_rows"].value:
        return
    print(f"    {'WARN' if not evaluation.passed else 'ok  '} {what}: {evaluation.description}")


def _new(args: argparse.Namespace) -> int:
    folder = Path(args.folder or os.environ.get("NEXUS_DEFS") or "datasets")
    path = new_dataset(args.name, args.data, args.target, folder / f"{args.name}.yaml")
    print(f"wrote {path}: read it, edit the roles it inferred, then `NEXUS_DEFS={folder} make dev` deploys it")
    return 0


def _serve(config: NexusConfig, args: argparse.Namespace) -> int:
    """Replace this process with `bentoml serve` (signals and exit codes are the server's own)."""
    port = args.port or load_settings().serving_port
    command = serve_command(port, SERVICE if args.source else served_bento(config), args.host)
    os.execv(command[0], command)


def _serve_once(record: dict) -> bool:
    """Start the service from the demo's Bento, ask it for one prediction, show the curl that does the same."""
    values = {k: None if pd.isna(v) else _json_value(v) for k, v in record.items()}
    body = json.dumps({"records": [values]})
    log = log_path("serve")
    settings = load_settings()
    headers = {"Content-Type": "application/json"}
    if settings.serving_token:
        headers["Authorization"] = f"Bearer {settings.serving_token}"
    try:
        with running(_serve_command, "/readyz", cwd=REPO_ROOT, log_path=log) as url:
            request = urllib.request.Request(f"{url}/predict", data=body.encode(), headers=headers)
            with urllib.request.urlopen(request, timeout=30) as response:
                print(f"\nThe champion answers on POST {url}/predict:\n{response.read().decode()}")
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"error: the service did not answer ({exc}); its log: {log}", file=sys.stderr)
        return False
    print(
        f"\nServe it yourself with `make serve` (the newest Bento), then:\n  curl -s -X POST "
        f"http://127.0.0.1:{settings.serving_port}/predict -H 'Content-Type: application/json' "
        + ('-H "Authorization: Bearer $NEXUS_SERVING_TOKEN" ' if settings.serving_token else "")
        + f"-d '{body}'"
    )
    return True


def _serve_command(port: int) -> list[str]:
    return [venv_bin("nexus"), "serve", "--port", str(port)]


def _report(instance: dg.DagsterInstance, run_id: str, what: str) -> bool:
    """One line per run; a failure's checks and reasons in one line each, the stack traces in the demo's log."""
    if instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS:
        print(f"{what}: ok")
        return True
    print(f"{what}: FAILED", file=sys.stderr)
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            where = f" of {evaluation.partition}" if evaluation.partition else ""
            print(f"  check {evaluation.check_name}{where}: {evaluation.description}", file=sys.stderr)
    log = log_path("demo")
    with log.open("a") as handle:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            error = entry.dagster_event.step_failure_data.error
            print(f"  {entry.step_key}: {_reason(error)}", file=sys.stderr)
            handle.write(f"run {run_id} step {entry.step_key}:\n{error.to_string()}\n")
    print(
        f"The data stays stored for inspection; fix the source or {config_path()} and run again. "
        f"Details: {log} and run {run_id} in the Dagster UI (make dev).",
        file=sys.stderr,
    )
    return False


def _reason(error) -> str:
    """The user-facing message of a step's error: a Failure's description, else the innermost cause's message."""
    while error.cause is not None and "Failure" not in error.cls_name:
        error = error.cause
    return error.message.strip().removeprefix("dagster._core.definitions.events.Failure: ")


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):  # pandas' Timestamp too
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value
