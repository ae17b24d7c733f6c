"""Manual control of the champion alias (`nexus status | promote | rollback`), recorded in the audit log."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading
import webbrowser

import dagster as dg
import pandas as pd

from nexus_cli.exporter import serve_metrics
from nexus_core import logs, registry
from nexus_core.config import NexusConfig
from nexus_core.settings import RegistryMissing, load_settings, reader_uri
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource
from nexus_resources.modes import build_resources


def status(config: NexusConfig, args: argparse.Namespace) -> int:
    mlflow, app_db = _resources(registry_needed=True)
    client, name = mlflow.reader(), config.model.registered_name
    rows = []
    for alias, version in sorted(registry.aliases(client, name).items()):
        tags = client.get_model_version(name, version).tags
        rows.append(
            {
                "alias": alias,
                "version": version,
                "family": tags.get("nexus.family", ""),
                f"holdout {config.metric}": tags.get("nexus.holdout.score", ""),
                "promoted at": tags.get("nexus.promoted_at", ""),
                "gate": tags.get("nexus.gate.decision", ""),
            }
        )
    print(f"\n{name} in {mlflow.tracking_uri}")
    print(pd.DataFrame(rows).to_markdown(index=False) if rows else "no aliases yet: run `nexus demo` or the models")
    decisions = app_db.decisions(name, limit=5)
    if decisions:
        print("\nRecent gate decisions:")
        print(
            pd.DataFrame(decisions)[
                ["decided_at", "decision", "actor", "challenger_version", "champion_version", "reason"]
            ].to_markdown(index=False)
        )
    retraining = app_db.retraining_history(name, limit=5)
    if retraining:
        print("\nRecent retraining decisions:")
        columns = ["decided_at", "decision", "champion_version", "partition", "reason"]
        print(pd.DataFrame(retraining)[columns].to_markdown(index=False))
    return 0


def exporter(config: NexusConfig, args: argparse.Namespace) -> int:
    """Serve the monitoring metrics for Prometheus until interrupted."""
    logs.configure("exporter")
    _, app_db = _resources()
    server, _ = serve_metrics(app_db, config, args.host, args.port)
    logging.getLogger("nexus.exporter").info(
        f"Prometheus metrics of {config.model.registered_name} on http://{args.host}:{args.port}/metrics",
        extra={"registered_model": config.model.registered_name},
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def promote(config: NexusConfig, args: argparse.Namespace) -> int:
    mlflow, app_db = _resources(registry_needed=True)
    client, name = mlflow.client(), config.model.registered_name
    with mlflow.reporting_failures(f"find {name} version {args.version}"):
        client.get_model_version(name, args.version)
    old = registry.promote(client, name, args.version)
    app_db.record_decision(
        registered_model=name,
        decision="manual_promote",
        actor=_actor(),
        challenger_version=args.version,
        champion_version=old,
        reason=args.reason,
    )
    print(f"{name}: champion moved from version {old} to {args.version}")
    return 0


def rollback(config: NexusConfig, args: argparse.Namespace) -> int:
    mlflow, app_db = _resources(registry_needed=True)
    client, name = mlflow.client(), config.model.registered_name
    old, restored = registry.rollback(client, name)
    app_db.record_decision(
        registered_model=name,
        decision="rollback",
        actor=_actor(),
        challenger_version=restored,
        champion_version=old,
        reason=args.reason,
    )
    print(f"{name}: champion rolled back from version {old} to {restored}")
    return 0


def open_link(args: argparse.Namespace) -> int:
    """An MLflow link kept in Dagster's metadata, on the MLflow UI as configured now (`NEXUS_MLFLOW_UI_URL`): the
    page after `#/` is kept and the address before it replaced, so links stay good after MLflow moves;
    `models:/NAME/VERSION` and `runs:/RUN_ID` open those pages."""
    link = args.link
    if link.startswith("models:/") and len(parts := link.removeprefix("models:/").split("/")) == 2:
        url = build_resources()["mlflow"].version_url(*parts)
    elif link.startswith("runs:/"):
        url = build_resources()["mlflow"].run_url(link.removeprefix("runs:/").split("/")[0])
    elif "/#/" in link:
        url = f"{load_settings().mlflow_ui}/#/{link.split('/#/', 1)[1]}"
    else:
        raise ValueError(
            f"{link!r} is not an MLflow link: give one from Dagster's metadata, models:/NAME/VERSION or runs:/RUN_ID"
        )
    print(url)
    if sys.stdout.isatty():
        webbrowser.open(url)
    return 0


def _resources(registry_needed: bool = False) -> tuple[MlflowResource, AppDatabase]:
    """The MLflow resource and the app database; with `registry_needed`, a missing tracking store is an error
    here, never a new empty store (training creates it)."""
    resources = build_resources()
    mlflow = resources["mlflow"].process_config_and_initialize()
    if registry_needed:
        try:
            reader_uri(mlflow.tracking_uri)
        except RegistryMissing as exc:
            raise dg.Failure(f"{exc}: nothing is trained yet (run `make demo`), or restore the store") from None
    mlflow.activate()
    return mlflow, resources["app_db"].process_config_and_initialize()


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def trace(config: NexusConfig, args: argparse.Namespace) -> int:
    """Prediction -> model version -> MLflow run -> Dagster run, training partitions, data hash, code version."""
    mlflow, app_db = _resources(registry_needed=True)
    client, name = mlflow.reader(), config.model.registered_name
    version = args.version
    if args.prediction_id:
        row = app_db.prediction(name, args.prediction_id)
        if row is None:
            raise ValueError(f"no stored prediction with id {args.prediction_id!r} for {name}")
        print(
            f"prediction {row['id']} (partition {row['partition']}, scored {row['scored_at']}): "
            f"{row['prediction']} (probability {row['probability']})"
        )
        version = row["model_version"]
    with mlflow.reporting_failures(f"find {name} version {version}"):
        model_version = client.get_model_version(name, version)
        run = client.get_run(model_version.run_id)
    tags = {**run.data.tags, **model_version.tags}
    chain = {
        "model version": f"{name} v{version}",
        "MLflow run": f"{run.info.run_id} (experiment {run.info.experiment_id}, {tags.get('nexus.family', '?')})",
        "Dagster run": tags.get("dagster.run_id", "?"),
        "Dagster asset": tags.get("dagster.asset_key", "?"),
        "training partitions": tags.get("dagster.partition_range", "?"),
        "training data hash": tags.get("nexus.data_hash", "?"),
        "holdout hash": tags.get("nexus.holdout_hash", "?"),
        "code version": tags.get("nexus.code_version", "?"),
        "gate": f"{tags.get('nexus.gate.decision', 'not judged')}: {tags.get('nexus.gate.reason', '')}".strip(),
    }
    width = max(map(len, chain))
    for key, value in chain.items():
        print(f"  {key:<{width}}  {value}")
    return 0
