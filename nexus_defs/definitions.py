"""The root of NexusML's `Definitions`, loaded by `workspace.yaml`, `dagster dev`, the daemon and every run.

`NEXUS_DEFS=DIR` deploys every dataset config in DIR (and any `NexusDataset` component under `nexus_defs/defs`,
as `dg scaffold defs` writes them) into one code location; otherwise the one dataset of `NEXUS_CONFIG` (or
`nexus.yaml`) is deployed alone, with plain names.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from nexus_core.config import NexusConfig, load_config
from nexus_defs.component import load_datasets
from nexus_defs.dataset import dataset_definitions
from nexus_resources.modes import build_resources

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = PROJECT_ROOT / "nexus_defs" / "defs"


def build_definitions(config: NexusConfig | None = None) -> dg.Definitions:
    """One dataset's deployment: `config`, or the one `NEXUS_CONFIG` names."""
    return _deployment([dataset_definitions(config or load_config())])


def build_deployment(folder: str | Path | None = None) -> dg.Definitions:
    """Every dataset of `folder` (each file a NexusML config) and of the project's component folder, in one
    deployment; nothing of one dataset selects, triggers or blocks another's."""
    return _deployment([*(load_datasets(folder) if folder else []), _components()])


def _components() -> dg.Definitions:
    """The `NexusDataset` components under `nexus_defs/defs`. A fresh checkout has none, and the folder is not
    scanned then: Dagster's scan costs a second, paid by every run that loads the code location."""
    if not any(path.name != "__init__.py" for path in COMPONENTS.rglob("*") if "__pycache__" not in path.parts):
        return dg.Definitions()
    return dg.load_from_defs_folder(project_root=PROJECT_ROOT)


def _deployment(parts: list[dg.Definitions]) -> dg.Definitions:
    return dg.Definitions.merge(*parts, dg.Definitions(resources=build_resources(), executor=_executor()))


def _executor() -> dg.ExecutorDefinition:
    """Each job is a short chain of steps: one process per run, not one per step. On Kubernetes,
    `NEXUS_STEP_EXECUTOR=k8s` runs each step in a pod of its own (deploy/kubernetes/dagster.yaml)."""
    chosen = os.environ.get("NEXUS_STEP_EXECUTOR", "in_process")
    if chosen == "in_process":
        return dg.in_process_executor
    if chosen == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"NEXUS_STEP_EXECUTOR={chosen!r}: use in_process or k8s")


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded lazily by Dagster's tools, so importing this module reads no config."""
    folder, components = os.environ.get("NEXUS_DEFS"), _components()
    if not folder and not components.assets:
        return build_definitions()
    return _deployment([*(load_datasets(folder) if folder else []), components])
