"""In-process runs on the persistent instance, the way `nexus demo` and the tests drive the asset graph."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from nexus_core.config import REPO_ROOT
from nexus_core.names import INGEST_JOB, RANGE_END, RANGE_START
from nexus_core.settings import load_settings

# Failures are read from the run's result (and stay in the instance's event log), not from the console.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def dagster_home() -> Path:
    """`$DAGSTER_HOME` (made absolute), or `dagster/` in the embedded folder, with the checkout's dagster.yaml
    unless it has one."""
    home = Path(os.environ.get("DAGSTER_HOME") or load_settings().home / "dagster").resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance of `dagster_home()`."""
    dagster_home()
    return dg.DagsterInstance.get()


def materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: list[str],
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One in-process run of `selection`, recorded in `instance` so the Dagster UI shows it."""
    return dg.materialize(
        list(defs.assets or []),
        selection=selection,
        partition_key=partition_key,
        resources=defs.resources,
        instance=instance,
        run_config={**QUIET, **(run_config or {})},
        tags=tags,
        raise_on_error=False,
    )


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    partition_key: str | None = None,
    keys: Sequence[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """One in-process run of a named job (of one partition, or of the consecutive partitions `keys`), recorded in
    `instance`."""
    partitions = _partitions(keys or [partition_key])
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
        **(partitions | {"tags": {**(partitions["tags"] or {}), **(tags or {})}}),
    )


def range_tags(keys: Sequence[str]) -> dict[str, str]:
    """The tags of a run over the consecutive partitions `keys`, as a single-run backfill gets them."""
    return {RANGE_START: keys[0], RANGE_END: keys[-1]}


def _partitions(keys: Sequence[str | None]) -> dict:
    """How a run is told its partitions: one by its key, several by the range's tags."""
    return (
        {"partition_key": keys[0], "tags": None}
        if len(keys) == 1
        else {"partition_key": None, "tags": range_tags(keys)}
    )


@dataclass
class Ingested:
    runs: list[str]  # run ids, in order
    blocked: list[str]  # partitions whose checks failed (their rows kept), or that could not be ingested


def ingest(defs: dg.Definitions, instance: dg.DagsterInstance, keys: Sequence[str]) -> Ingested:
    """`raw_data` and `features` of the consecutive partitions `keys` in one run, as a backfill under the daemon
    runs them. A partition whose blocking checks fail blocks itself alone: the features of the others are
    materialized in a run per stretch of consecutive partitions that passed."""
    result = run_job(defs, instance, INGEST_JOB, keys=keys)
    if result.success:
        return Ingested([result.run_id], [])
    failed = {
        event.partition
        for event in result.get_asset_check_evaluations()
        if not event.passed and event.severity == dg.AssetCheckSeverity.ERROR
    }
    if not failed:  # the run failed for another reason than its checks: nothing is known to have passed
        return Ingested([result.run_id], list(keys))
    runs = [result.run_id]
    for stretch in _stretches([key in failed for key in keys], keys):
        followed = materialize(defs, instance, ["features"], **_partitions(stretch))
        runs.append(followed.run_id)
        if not followed.success:
            failed |= set(stretch)
    return Ingested(runs, [key for key in keys if key in failed])


def _stretches(blocked: list[bool], keys: Sequence[str]) -> list[list[str]]:
    """The runs of consecutive keys that are not blocked."""
    stretches, current = [], []
    for key, stop in zip(keys, blocked, strict=True):
        if stop:
            stretches, current = stretches + ([current] if current else []), []
        else:
            current.append(key)
    return stretches + ([current] if current else [])
