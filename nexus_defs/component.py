"""`NexusDataset`, the component type of one dataset's whole model lifecycle, and the loader of a folder of them.

A deployment of many datasets loads each NexusML config as one `NexusDataset`: either every config file of the
folder `NEXUS_DEFS` names, or a `defs.yaml` under `nexus_defs/defs/` (`dg scaffold defs nexus_defs.NexusDataset
NAME` writes one) whose `config` attribute names the file.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import BaseModel, Field

from nexus_core.config import ConfigError, NexusConfig, load_config
from nexus_defs.dataset import dataset_definitions
from nexus_defs.scaffold import new_dataset

CONFIG_SUFFIXES = (".yaml", ".yml")
DATASET_FILE = "nexus.yaml"  # a scaffolded component's config, beside its defs.yaml


class ScaffoldParams(BaseModel):
    data: str = Field(description="The CSV or Parquet file of the dataset.")
    target: str = Field(description="The column to predict.")


class NexusDatasetScaffolder(dg.Scaffolder[ScaffoldParams]):
    """`dg scaffold defs nexus_defs.NexusDataset NAME --data FILE --target COLUMN`: the component's `defs.yaml` and
    beside it the dataset's config, its roles inferred from the file (as `nexus new` writes it)."""

    @classmethod
    def get_scaffold_params(cls) -> type[ScaffoldParams]:
        return ScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[ScaffoldParams]) -> None:
        folder = request.target_path
        new_dataset(folder.name, request.params.data, request.params.target, folder / DATASET_FILE)
        dg.scaffold_component(request, {"config": DATASET_FILE})


@dg.scaffold_with(NexusDatasetScaffolder)
class NexusDataset(dg.Component, dg.Resolvable, dg.Model):
    """A dataset's graph, raw data to served model and its monitoring, under a key prefix of its name."""

    config: str = Field(description="The dataset's NexusML config file, relative to this component's folder.")

    def dataset(self, folder: Path) -> NexusConfig:
        """The config, scoped to its own prefix, group and names in the deployment."""
        path = Path(self.config) if Path(self.config).is_absolute() else folder / self.config
        return load_config(path).model_copy(update={"scoped": True})

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dataset_definitions(self.dataset(context.path))


def load_datasets(folder: str | Path) -> list[dg.Definitions]:
    """Every config file of `folder` as a `NexusDataset`'s definitions."""
    return [dataset_definitions(config) for config in dataset_configs(folder)]


def dataset_configs(folder: str | Path) -> list[NexusConfig]:
    """Every config file of `folder`, scoped; two files may not claim one dataset or model name."""
    folder = Path(folder).resolve()
    files = sorted(path for path in folder.iterdir() if path.suffix in CONFIG_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise ConfigError(f"{folder}: NEXUS_DEFS names a folder with no dataset config (*.yaml); `nexus new` adds one")
    configs = [NexusDataset(config=str(path)).dataset(folder) for path in files]
    for what, claimed in (("dataset.name", _dataset_name), ("model.registered_name", _model_name)):
        seen: dict[str, Path] = {}
        for config in configs:
            if claimed(config) in seen:
                raise ConfigError(
                    f"{config.path}: {what} {claimed(config)!r} is already used by {seen[claimed(config)]}; each "
                    "dataset of a deployment needs its own"
                )
            seen[claimed(config)] = config.path
    return configs


def dataset_config(folder: str | Path, name: str) -> NexusConfig:
    """The config of the dataset (or registered model) `name` in the deployment of `folder`."""
    configs = dataset_configs(folder)
    found = [config for config in configs if name in (_dataset_name(config), _model_name(config))]
    if not found:
        known = ", ".join(_dataset_name(config) for config in configs)
        raise ConfigError(f"--model {name!r}: no dataset or registered model of that name in {folder}; it has {known}")
    return found[0]


def _dataset_name(config: NexusConfig) -> str:
    return config.dataset.name


def _model_name(config: NexusConfig) -> str:
    return config.model.registered_name
