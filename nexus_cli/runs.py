"""In-process runs on the persistent instance, the way `nexus demo` and the tests drive the asset graph."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from nexus_core.config import REPO_ROOT
from nexus_core.settings import load_settings

# Failures are read from the run's result (and stay in the instance's event log), not from the console.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance: `$DAGSTER_HOME`, or `dagster/` in the embedded folder."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(load_settings().home.resolve() / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
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
) -> dg.ExecuteInProcessResult:
    """One in-process run of a named job (of one partition), recorded in `instance`."""
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, run_config=QUIET, partition_key=partition_key, raise_on_error=False
    )
