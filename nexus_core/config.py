"""The one loader of `nexus.yaml`: the dataset, its checks, the training window and the model."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from nexus_core.files import header, source_files

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "nexus.yaml"

Task = Literal["binary_classification", "multiclass_classification", "regression"]
Cadence = Literal["daily", "weekly", "monthly", "quarterly", "yearly", "files", "none"]
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    encoding: str = Field("utf-8", description="The text encoding of CSV files.")


class SqlSource(_Strict):
    kind: Literal["sql"]
    url: str = Field(description="SQLAlchemy URL; `${VAR}` is replaced from the environment.")
    query: str = Field(
        description="May use :start and :end (ISO timestamps) to pick one partition; ORDER BY keeps hashes stable."
    )


Source = Annotated[SyntheticSource | FileSource | SqlSource, Field(discriminator="kind")]


class ColumnRoles(_Strict):
    """Roles the config declares; the others are inferred from the values and shown in the data contract."""

    model_config = ConfigDict(populate_by_name=True)

    numeric: list[str] | None = None
    categorical: list[str] | None = None
    text: list[str] = Field([], description="Free text: TF-IDF of its words and word pairs.")
    lists: list[str] = Field(
        [], alias="list", description="Delimiter-separated tokens ('Drama|Comedy'): a column per frequent token."
    )
    drop: list[str] = []

    @property
    def declared(self) -> list[str]:
        return [*(self.numeric or []), *(self.categorical or []), *self.text, *self.lists]


class TimestampParts(_Strict):
    """Columns that together hold the time, assembled into the `dataset.timestamp` column."""

    year: str
    month: str | None = None
    day: str | None = None
    hour: str | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.year, self.month, self.day, self.hour) if c]


class RareClasses(_Strict):
    min_rows: int = Field(5, gt=0, description="A class with fewer labelled rows than this is too rare to learn.")
    group: bool = Field(False, description="Train and predict rare classes as one class named `other`.")


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin") from None
    return value


def _owner(value: str) -> str:
    if not re.fullmatch(r"team:[\w.-]+|[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError(f"an owner is an email or team:NAME (e.g. team:analytics), not {value!r}")
    return value


class DatasetConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    source: Source
    target: str
    task: Task
    id_column: str | None = None
    timestamp: str | None = Field(None, description="Drives the partitions and the time split.")
    timestamp_parts: TimestampParts | None = Field(
        None, description="Year, month, day (and hour) columns assembled into the `timestamp` column, which names it."
    )
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        None,
        description="The unit of a timestamp written as a number since 1970 (epoch); default: the unit its "
        "magnitude shows.",
    )
    timezone: Annotated[str, AfterValidator(_timezone)] = Field(
        "UTC",
        description="Where a day starts: timestamps with an offset are converted to it, those without are taken "
        "to be in it.",
    )
    partitions: Cadence | None = Field(
        None,
        description="daily, weekly, monthly, files (one per file of a glob) or none; inferred when left out: from "
        "the timestamp's cadence, else files for a glob, else none.",
    )
    start_date: dt.date | None = Field(None, description="Inferred from the data for file sources.")
    end_date: dt.date | None = None
    classes: list[str | int] | None = None
    rare_classes: RareClasses = RareClasses()
    columns: ColumnRoles = ColumnRoles()
    owners: list[Annotated[str, AfterValidator(_owner)]] = Field(
        default_factory=list, description="Who answers for the data: emails or team:NAME, shown as owners in Dagster."
    )
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="What each column means, shown in the data assets' column schema."
    )

    @model_validator(mode="after")
    def _partitioning_is_complete(self) -> DatasetConfig:
        if self.partitions == "files" and self.source.kind != "file":
            raise ValueError("partitions: files needs a file source whose path is a glob, e.g. data/*.csv")
        if self.partitions not in (None, "none", "files") and not self.timestamp:
            raise ValueError(f"partitions: {self.partitions} needs a timestamp column; set dataset.timestamp")
        if (
            self.timestamp
            and self.partitions not in ("none", "files")
            and not self.start_date
            and self.source.kind != "file"
        ):
            raise ValueError(
                f"start_date is required when a timestamp column drives the partitions of a {self.source.kind} source"
            )
        if self.timestamp_parts and not self.timestamp:
            raise ValueError("timestamp_parts needs timestamp: the name of the column they are assembled into")
        if self.end_date and self.start_date and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date")
        if isinstance(self.source, SyntheticSource) and (not self.timestamp or self.partitions not in (None, "daily")):
            raise ValueError("the synthetic source is daily: set timestamp (e.g. event_time) and daily partitions")
        return self


class Range(_Strict):
    min: float | None = None
    max: float | None = None


class ChecksConfig(_Strict):
    max_null_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="A limit on every feature's share of missing values; by default each column is held to the "
        "share its first accepted load showed (the data contract), plus null_rate_tolerance.",
    )
    null_rate: dict[str, float] = Field({}, description="Limits on the share of missing values of single columns.")
    null_rate_tolerance: float = Field(
        0.3, ge=0, le=1, description="How far above its usual share of missing values a column may go."
    )
    ranges: dict[str, Range] = {}
    allow_empty_partitions: bool = Field(
        False, description="Empty periods are normal for this data: an empty partition warns instead of blocking."
    )
    min_labelled_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="A partition whose share of rows with a target value is below this is blocked; rows awaiting "
        "a label are otherwise kept, scored and monitored, and left out of training.",
    )


class TrainingConfig(_Strict):
    window_partitions: int | None = Field(
        None, gt=0, description="The newest partitions to train on; default all materialized, up to max_rows."
    )
    max_rows: int = Field(2_000_000, gt=0, description="The window stops growing (newest first) at this many rows.")
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    holdout_fraction: float = Field(0.15, gt=0, lt=0.5)
    min_rows: int = Field(50, gt=0, description="Fewer training rows than this is refused.")
    on_change: Literal["weight", "cut", "ignore"] = Field(
        "weight",
        description="What a retrain requested for persistent drift or degradation does with the partitions since "
        "the change began: weight (the whole window, those rows weighing change_weight times the older ones, so "
        "the seasons of the older rows are kept), cut (train on them only, when they hold min_rows training rows: "
        "for a regime that is gone for good), or ignore.",
    )
    change_weight: float = Field(3.0, ge=1, description="How much more a row since the change weighs (on_change).")
    time_budget_seconds: float = Field(
        1800,
        gt=0,
        description="Wall-clock seconds all families may take to fit, shared: each gets what is left divided by "
        "the families still to fit. Boosting and forests stop adding iterations when the next would not end in "
        "time and keep what they have; a family whose turn comes after the budget is spent is left out.",
    )
    selection_windows: int = Field(
        2,
        ge=1,
        description="Windows the families and the ensemble's weights are chosen on: the validation part and older "
        "windows of its length cut from the end of the training part, each scored by the family refitted on the "
        "rows before it (rolling origin), so one slice that may be another season does not choose alone; 1: the "
        "validation part only. Each older window costs each family one more (smaller) fit.",
    )
    seed: int = 7


Family = Literal["linear", "random_forest", "hist_gradient_boosting", "lightgbm", "catboost"]
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "balanced_accuracy", "precision", "recall", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class GateConfig(_Strict):
    margin: float | None = Field(
        None,
        ge=0,
        description="How much the challenger must gain: default 0.002 absolute for classification metrics, "
        "0.01 (1% of the reference's error) relative for regression.",
    )
    margin_mode: Literal["absolute", "relative"] | None = Field(
        None, description="relative: margin is a share of the reference's score. Default by task, as above."
    )
    confidence: float = Field(
        0.95,
        gt=0,
        lt=1,
        description="Promote only when the lower end of this confidence interval of the gain (a paired bootstrap "
        "on the holdout) clears the margin.",
    )
    max_holdout_drop: float = Field(
        0.25, ge=0, description="A holdout score this share worse than the validation score is unstable."
    )
    instability: Literal["warn", "refuse"] = Field(
        "refuse",
        description="What an unstable challenger gets: refused (the default), or promoted with a warning in the "
        "decision.",
    )
    backtest_folds: int = Field(
        5,
        ge=0,
        description="A first promotion the holdout cannot decide (its interval does not clear the margin) is decided "
        "by a rolling-origin backtest of this many folds over the training history: promoted only if the mean of "
        "the folds' gains clears the margin with confidence and no fold shows the challenger worse than the baseline "
        "beyond doubt; 0: the holdout alone decides.",
    )
    max_memory_loss: float = Field(
        0.1,
        ge=0,
        description="The gate also scores both models on a sample of rows older than the validation period; a "
        "challenger this share worse than the reference there has forgotten them and is refused.",
    )
    slice_column: str | None = Field(None, description="A categorical column; no slice may regress too much.")
    slice_tolerance: float = Field(0.02, ge=0)
    min_slice_rows: int = Field(50, gt=0)
    guardrails: dict[str, Annotated[float, Field(ge=0)]] = Field(
        {},
        description="Metrics besides the selection metric that may not get worse than the reference's by more "
        "than the given tolerance on the holdout, e.g. {f1: 0.02, recall: 0.05, brier: 0.01}.",
    )
    max_predict_ms: float | None = Field(
        None, gt=0, description="Latency budget: the challenger's median predict of one record, in milliseconds."
    )
    min_shadow_rows: int = Field(
        0,
        ge=0,
        description="Labelled live requests the challenger must have answered in shadow (shadow_comparison) before "
        "it may be promoted; 0: the holdout alone decides.",
    )


class ThresholdConfig(_Strict):
    """How a binary classifier turns the positive class's probability into a label, chosen on validation."""

    objective: Literal["f1", "recall", "cost", "fixed"] = Field(
        "f1",
        description="f1: the threshold with the best F1; recall: the most precise one that keeps min_recall; "
        "cost: the cheapest under the cost matrix; fixed: `value`.",
    )
    min_recall: float | None = Field(None, gt=0, le=1, description="objective recall: the recall to keep.")
    false_positive_cost: float = Field(1.0, ge=0, description="objective cost: the cost of a false alarm.")
    false_negative_cost: float = Field(1.0, ge=0, description="objective cost: the cost of a missed positive.")
    value: float = Field(0.5, gt=0, lt=1, description="objective fixed: the threshold.")

    @model_validator(mode="after")
    def _recall_has_a_target(self) -> ThresholdConfig:
        if self.objective == "recall" and self.min_recall is None:
            raise ValueError("objective recall needs min_recall (e.g. 0.8): the recall the threshold must keep")
        return self


class ModelConfig(_Strict):
    registered_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    selection_metric: str | None = Field(
        None, description="Default: roc_auc for binary, accuracy for multiclass, rmse for regression."
    )
    candidates: list[Family] = ["linear", "random_forest", "hist_gradient_boosting"]
    ensemble: bool = Field(
        True,
        description="Also offer the families' weighted average (greedy ensemble selection on validation) as a "
        "candidate, when it beats every family alone there.",
    )
    seed: int = 7
    gate: GateConfig = GateConfig()
    threshold: ThresholdConfig = ThresholdConfig()


class RetrainingConfig(_Strict):
    """When persistent drift or degradation requests a retrain, and the guardrails that hold it back."""

    enabled: bool = True
    consecutive_partitions: int = Field(2, gt=0, description="Flagged partitions in a row before retraining.")
    min_labelled_rows: int = Field(
        200, ge=0, description="Labelled predictions the champion must have made before it is retrained."
    )
    cooldown_partitions: int = Field(
        7, ge=0, description="Monitored partitions after a requested retrain before another may be requested."
    )
    approval_required: bool = Field(False, description="A promoting gate waits for `nexus promote` instead.")


class MonitoringConfig(_Strict):
    drift_share_threshold: float = Field(0.25, gt=0, le=1, description="Share of drifted columns that warns.")
    degradation_tolerance: float = Field(
        0.05,
        ge=0,
        description="How far below its holdout score a partition may fall: in the metric's units for "
        "classification, as a share of the holdout score for regression.",
    )
    degradation_confidence: float = Field(
        0.95,
        ge=0,
        lt=1,
        description="A partition is degraded only when the optimistic end of this confidence interval of its score "
        "(a bootstrap of its rows) is still beyond the tolerance; 0 judges the score alone.",
    )
    min_labelled_rows: int = Field(30, gt=0, description="Fewer labelled predictions than this are not judged.")
    min_drift_rows: int = Field(30, gt=0, description="A partition with fewer rows than this is not judged for drift.")
    score_chunk_rows: int = Field(200_000, gt=0, description="Rows scored per predict call in batch_predictions.")
    label_window_partitions: int = Field(
        7, ge=0, description="Recent partitions whose missing labels are read again as newer partitions arrive."
    )
    shadow_batch: bool = Field(
        False,
        description="batch_predictions also scores the `challenger` alias, stored as shadow predictions that "
        "shadow_comparison judges against the labels beside live traffic.",
    )
    retraining: RetrainingConfig = RetrainingConfig()


class AutomationConfig(_Strict):
    """What runs by itself under the Dagster daemon."""

    catch_up_partitions: int = Field(
        30,
        ge=0,
        description="Partitions before the newest that the ingest schedule fills when they are missing (after "
        "downtime, or a daemon started later than the data), oldest first; 0 ingests the newest alone.",
    )


class ComputeConfig(_Strict):
    """Where the per-partition work of features, batch_predictions, drift_report, ground_truth and model_performance
    runs, and where the lightgbm family trains over a history longer than the training window."""

    engine: Literal["local", "dask"] = Field(
        "local", description="local: in the run's process; dask: as tasks on the Dask cluster at `scheduler`."
    )
    scheduler: str | None = Field(
        None, description="The Dask scheduler's address, e.g. tcp://dask-scheduler:8786; `${VAR}` from the environment."
    )
    connect_timeout_seconds: float = Field(30, gt=0, description="How long to wait for the scheduler to answer.")

    @model_validator(mode="after")
    def _scheduler_for_dask(self) -> ComputeConfig:
        if self.engine == "dask" and not self.scheduler:
            raise ValueError("engine dask needs compute.scheduler, the Dask scheduler's address (tcp://host:8786)")
        return self

    @property
    def address(self) -> str | None:
        """The scheduler's address with `${VAR}`s filled in from the environment."""
        return os.path.expandvars(self.scheduler) if self.scheduler else None


class NexusConfig(_Strict):
    dataset: DatasetConfig
    checks: ChecksConfig = ChecksConfig()
    training: TrainingConfig = TrainingConfig()
    model: ModelConfig
    monitoring: MonitoringConfig = MonitoringConfig()
    automation: AutomationConfig = AutomationConfig()
    compute: ComputeConfig = ComputeConfig()
    path: Path = Field(DEFAULT_CONFIG_PATH, exclude=True)
    # Set by the loader of a deployment of many datasets: this one's assets, jobs and sensors carry its name.
    scoped: bool = Field(False, exclude=True)

    @model_validator(mode="after")
    def _metric_fits_task(self) -> NexusConfig:
        allowed = REGRESSION_METRICS if self.dataset.task == "regression" else CLASSIFICATION_METRICS
        if self.model.selection_metric is not None and self.model.selection_metric not in allowed:
            raise ValueError(
                f"model.selection_metric {self.model.selection_metric!r} does not fit task "
                f"{self.dataset.task!r}; use one of {', '.join(allowed)}"
            )
        unknown = sorted(set(self.model.gate.guardrails) - set(allowed))
        if unknown:
            raise ValueError(
                f"model.gate.guardrails: {', '.join(unknown)} is not a metric of task {self.dataset.task!r}; "
                f"use some of {', '.join(allowed)}"
            )
        return self

    @property
    def metric(self) -> str:
        """The selection metric, with the task's default filled in."""
        default = {"regression": "rmse", "multiclass_classification": "accuracy"}.get(self.dataset.task, "roc_auc")
        return self.model.selection_metric or default

    @property
    def gate_margin(self) -> tuple[float, bool]:
        """(margin, relative): the gate's margin with the task's defaults filled in."""
        regression = self.dataset.task == "regression"
        relative = (self.model.gate.margin_mode or ("relative" if regression else "absolute")) == "relative"
        default = 0.01 if relative else 0.002
        return (default if self.model.gate.margin is None else self.model.gate.margin), relative

    @property
    def prefix(self) -> list[str]:
        """The asset key prefix of this dataset's graph: its name in a deployment of many, none alone."""
        return [self.dataset.name] if self.scoped else []

    def asset(self, name: str) -> list[str]:
        """The key path of this dataset's asset `name`."""
        return [*self.prefix, name]

    def named(self, name: str) -> str:
        """The name of this dataset's job, sensor, schedule or dynamic partitions `name` (Dagster names are unique
        in a code location and allow no `-`)."""
        return f"{self.dataset.name.replace('-', '_')}__{name}" if self.scoped else name

    def resolve_path(self, relative: str) -> str:
        """A path from the config file, taken relative to the file's folder."""
        return relative if os.path.isabs(relative) else str(self.path.parent / relative)


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: dates reach pydantic as text, so a bad one is reported with its key."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def config_path(path: str | Path | None = None) -> Path:
    """The config file in use: `path`, `$NEXUS_CONFIG`, or `nexus.yaml` at the repo root."""
    return Path(path or os.environ.get("NEXUS_CONFIG") or DEFAULT_CONFIG_PATH).resolve()


def load_config(path: str | Path | None = None, check_files: bool = True) -> NexusConfig:
    """Load and validate the config at `path`, `$NEXUS_CONFIG`, or `nexus.yaml` at the repo root. With
    `check_files`, a file source's files and header are checked too (the service, which reads no data, skips it)."""
    path = config_path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (set NEXUS_CONFIG or create nexus.yaml)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'dataset' and 'model' at the top")
    unset = [
        f"  - {key}: environment variable {name} is not set" for key, name in _variables(raw) if name not in os.environ
    ]
    if unset:
        raise ConfigError("\n".join([f"{path}: {len(unset)} problem(s) in the configuration:", *unset]))
    try:
        config = NexusConfig.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    problems = _source_problems(config) if check_files else []
    if problems:
        lines = [f"{path}: {len(problems)} problem(s) in the configuration:", *(f"  - {p}" for p in problems)]
        raise ConfigError("\n".join(lines))
    return config


def _variables(raw: object, key: str = "") -> list[tuple[str, str]]:
    """(key, variable) for every `${VAR}` in the file's strings."""
    if isinstance(raw, dict):
        return [found for k, v in raw.items() for found in _variables(v, f"{key}.{k}" if key else str(k))]
    if isinstance(raw, list):
        return [found for i, v in enumerate(raw) for found in _variables(v, f"{key}[{i}]")]
    return [(key, name) for name in _VARIABLE.findall(raw)] if isinstance(raw, str) else []


def _source_problems(config: NexusConfig) -> list[str]:
    """For file sources: the files exist and their header holds every column the config names."""
    source, dataset = config.dataset.source, config.dataset
    if not isinstance(source, FileSource):
        return []
    paths = source_files(config.resolve_path(source.path))
    if not paths:
        return [f"dataset.source.path: {source.path!r} matches no file (looked for {config.resolve_path(source.path)})"]
    try:
        columns = header(paths[0], source.format, source.encoding)
    except ValueError as exc:
        return [f"dataset.source.path: {exc}"]
    named = {
        "dataset.target": [dataset.target],
        "dataset.id_column": [dataset.id_column],
        "dataset.timestamp": [dataset.timestamp] if not dataset.timestamp_parts else [],
        "dataset.timestamp_parts": dataset.timestamp_parts.columns if dataset.timestamp_parts else [],
        "dataset.columns.numeric": dataset.columns.numeric or [],
        "dataset.columns.categorical": dataset.columns.categorical or [],
        "dataset.columns.text": dataset.columns.text,
        "dataset.columns.list": dataset.columns.lists,
        "dataset.columns.drop": dataset.columns.drop,
        "checks.ranges": list(config.checks.ranges),
        "checks.null_rate": list(config.checks.null_rate),
    }
    return [
        f"{key}: column {column!r} is not in the header of {paths[0]} (columns: {', '.join(columns)})"
        for key, names in named.items()
        for column in names
        if column and column not in columns
    ]


# Keys a release replaced, so an old config says what to write instead.
RENAMED = {
    "training.cut_at_change": "training.on_change (weight, cut or ignore; true was cut)",
    "model.gate.refuse_unstable": "model.gate.instability (warn or refuse; refuse is now the default)",
}


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s) in the configuration:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-after"))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "extra_forbidden":
            message = "unknown key" + (f"; replaced by {RENAMED[key]}" if key in RENAMED else "")
        elif error["type"] == "union_tag_invalid":
            message = f"unknown source kind {error['input'].get('kind')!r}; use synthetic, file or sql"
        lines.append(f"  - {key or '(top level)'}: {message}")
    return "\n".join(lines)
