"""The one loader of `nexus.yaml`: the dataset, its checks, the training window and the model."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "nexus.yaml"

Task = Literal["binary_classification", "multiclass_classification", "regression"]


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftScenario(_Strict):
    """From `start_date` on, the named features shift and (optionally) the label relationship changes."""

    start_date: dt.date
    features: list[str] = ["monthly_charges", "usage_gb", "region"]
    strength: float = Field(1.0, ge=0)
    label_shift: bool = True


class SyntheticSource(_Strict):
    kind: Literal["synthetic"]
    seed: int = 42
    rows_per_day: int = Field(2000, gt=0)
    positive_rate: float = Field(0.15, gt=0, lt=1)
    label_delay_days: int = Field(3, ge=0)
    drift: DriftScenario | None = None


class FileSource(_Strict):
    kind: Literal["file"]
    path: str = Field(description="A CSV or Parquet file, or a glob of them; relative to the config file.")
    format: Literal["csv", "parquet"] | None = None


class SqlSource(_Strict):
    kind: Literal["sql"]
    url: str = Field(description="SQLAlchemy URL; `${VAR}` is replaced from the environment.")
    query: str = Field(
        description="May use :start and :end (ISO timestamps) to pick one partition; ORDER BY keeps hashes stable."
    )


Source = Annotated[SyntheticSource | FileSource | SqlSource, Field(discriminator="kind")]


class ColumnRoles(_Strict):
    numeric: list[str] | None = None
    categorical: list[str] | None = None
    drop: list[str] = []


class DatasetConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    source: Source
    target: str
    task: Task
    id_column: str | None = None
    timestamp: str | None = Field(None, description="Drives daily partitions and the time split.")
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    classes: list[str | int] | None = None
    columns: ColumnRoles = ColumnRoles()

    @model_validator(mode="after")
    def _partitioning_is_complete(self) -> DatasetConfig:
        if self.timestamp and not self.start_date:
            raise ValueError("start_date is required when a timestamp column drives daily partitions")
        if self.end_date and self.start_date and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date")
        if isinstance(self.source, SyntheticSource) and not self.timestamp:
            raise ValueError("the synthetic source is daily: set timestamp (e.g. event_time)")
        return self


class Range(_Strict):
    min: float | None = None
    max: float | None = None


class ChecksConfig(_Strict):
    max_null_rate: float = Field(0.5, ge=0, le=1)
    null_rate: dict[str, float] = {}
    ranges: dict[str, Range] = {}


class TrainingConfig(_Strict):
    window_days: int = Field(28, gt=0)
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    holdout_fraction: float = Field(0.15, gt=0, lt=0.5)
    min_rows: int = Field(500, gt=0)
    seed: int = 7


Family = Literal["linear", "random_forest", "hist_gradient_boosting"]
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "balanced_accuracy")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class GateConfig(_Strict):
    margin: float = Field(0.002, ge=0, description="How much the challenger must gain on the selection metric.")
    slice_column: str | None = Field(None, description="A categorical column; no slice may regress too much.")
    slice_tolerance: float = Field(0.02, ge=0)
    min_slice_rows: int = Field(50, gt=0)


class ModelConfig(_Strict):
    registered_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    selection_metric: str | None = Field(None, description="Default: roc_auc, or rmse for regression.")
    candidates: list[Family] = ["linear", "random_forest", "hist_gradient_boosting"]
    seed: int = 7
    gate: GateConfig = GateConfig()


class RetrainingConfig(_Strict):
    """When persistent drift or degradation requests a retrain, and the guardrails that hold it back."""

    enabled: bool = True
    consecutive_partitions: int = Field(2, gt=0, description="Flagged partitions in a row before retraining.")
    min_labelled_rows: int = Field(
        1000, ge=0, description="Labelled predictions the champion must have made before it is retrained."
    )
    cooldown_days: int = Field(7, ge=0, description="Partitions (days) after a requested retrain before another.")
    approval_required: bool = Field(False, description="A promoting gate waits for `nexus promote` instead.")


class MonitoringConfig(_Strict):
    drift_share_threshold: float = Field(0.25, gt=0, le=1, description="Share of drifted columns that warns.")
    degradation_tolerance: float = Field(0.05, ge=0, description="How far below its holdout score a day may fall.")
    min_labelled_rows: int = Field(100, gt=0, description="Fewer labelled predictions than this are not judged.")
    score_chunk_rows: int = Field(200_000, gt=0, description="Rows scored per predict call in batch_predictions.")
    retraining: RetrainingConfig = RetrainingConfig()


class NexusConfig(_Strict):
    dataset: DatasetConfig
    checks: ChecksConfig = ChecksConfig()
    training: TrainingConfig = TrainingConfig()
    model: ModelConfig
    monitoring: MonitoringConfig = MonitoringConfig()
    path: Path = Field(DEFAULT_CONFIG_PATH, exclude=True)

    @model_validator(mode="after")
    def _metric_fits_task(self) -> NexusConfig:
        allowed = REGRESSION_METRICS if self.dataset.task == "regression" else CLASSIFICATION_METRICS
        if self.model.selection_metric is not None and self.model.selection_metric not in allowed:
            raise ValueError(
                f"model.selection_metric {self.model.selection_metric!r} does not fit task "
                f"{self.dataset.task!r}; use one of {', '.join(allowed)}"
            )
        return self

    @property
    def metric(self) -> str:
        """The selection metric, with the task's default filled in."""
        default = "rmse" if self.dataset.task == "regression" else "roc_auc"
        return self.model.selection_metric or default

    @property
    def partitioned(self) -> bool:
        return self.dataset.timestamp is not None

    def resolve_path(self, relative: str) -> str:
        """A path from the config file, taken relative to the file's folder."""
        return relative if os.path.isabs(relative) else str(self.path.parent / relative)


def load_config(path: str | Path | None = None) -> NexusConfig:
    """Load and validate the config at `path`, `$NEXUS_CONFIG`, or `nexus.yaml` at the repo root."""
    path = Path(path or os.environ.get("NEXUS_CONFIG") or DEFAULT_CONFIG_PATH).resolve()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (set NEXUS_CONFIG or create nexus.yaml)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'dataset' and 'model' at the top")
    try:
        return NexusConfig.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s) in the configuration:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-after"))
        message = error["msg"]
        if error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "union_tag_invalid":
            message = f"unknown source kind {error['input'].get('kind')!r}; use synthetic, file or sql"
        lines.append(f"  - {key or '(top level)'}: {message}")
    return "\n".join(lines)
