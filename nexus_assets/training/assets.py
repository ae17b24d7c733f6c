"""`candidate_models` and `challenger_model`: train each family, and register the best; `champion_model`, the gate,
is in `promotion.py`."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
from mlflow import active_run, log_dict, log_metrics, log_params, set_tag
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from nexus_assets.features.split import TrainingDataset
from nexus_assets.lib.keys import inputs
from nexus_assets.lib.reference import CALIBRATION_ARTIFACT, log_reference, reference_sample
from nexus_assets.monitoring import drift
from nexus_assets.training import cluster, selection
from nexus_assets.training.budget import Stopped
from nexus_assets.training.candidates import (
    Candidate,
    budgeted,
    check_trainable,
    estimator,
    log_pipeline,
    target,
)
from nexus_assets.training.metrics import evaluate, metrics_for, unscorable
from nexus_assets.training.promotion import build_champion_model
from nexus_assets.training.thresholds import choose_threshold
from nexus_core import registry
from nexus_core.config import NexusConfig, ThresholdConfig
from nexus_core.ensemble import ENSEMBLE, weights
from nexus_core.features import model_inputs
from nexus_core.inference import THRESHOLD
from nexus_resources.compute import Compute
from nexus_resources.frame_io import ParquetIOManager, PartitionFiles
from nexus_resources.mlflow import MlflowResource

FAR = 0.05  # a validation score this share away from the family's average over the windows is reported


def build_training_assets(config: NexusConfig) -> list[dg.AssetsDefinition]:
    return [_candidate_models(config), _challenger_model(config), build_champion_model(config)]


@dataclass
class _Older:
    """An older selection window: the dataset that trains on the rows before it, and its rows as the model reads
    them."""

    data: TrainingDataset
    X: pd.DataFrame
    y: pd.Series


@dataclass
class _Window:
    """What every candidate is fitted, scored and calibrated against: the training window's splits, read once."""

    X_val: pd.DataFrame
    y_val: pd.Series
    older: list[_Older]  # the older selection windows (`training.selection_windows`), newest first
    X_hold: pd.DataFrame
    y_hold: pd.Series
    example: pd.DataFrame  # the most complete validation rows: MLflow's input example and signature
    lineage: dict[str, str]
    reference: pd.DataFrame  # drift's reference sample
    days: list[pd.DataFrame]  # the training partitions drift is calibrated on
    usual_data: dict  # the data columns' calibration, the same for every candidate


def _window(config: NexusConfig, data: TrainingDataset) -> _Window:
    X_val = model_inputs(data.validation, data.spec)
    learned_from = pd.concat([data.train, data.validation], ignore_index=True)
    reference = reference_sample(model_inputs(learned_from, data.spec), config.model.seed)
    parts = data.partitions(("train", "validation"), config.monitoring.min_drift_rows, drift.CALIBRATION_PARTITIONS)
    days = [model_inputs(frame, data.spec) for frame in parts]
    return _Window(
        X_val=X_val,
        y_val=target(config, data.validation),
        older=[
            _Older(w, model_inputs(w.validation, data.spec), target(config, w.validation))
            for w in older_windows(config, data)
        ],
        X_hold=model_inputs(data.holdout, data.spec),
        y_hold=target(config, data.holdout),
        # the most complete rows: with a mostly-empty column, no row may be complete
        example=X_val.loc[X_val.isna().sum(axis=1).sort_values(kind="stable").index[:5]],
        lineage=_lineage_tags(data),
        reference=reference,
        days=days,
        usual_data=drift.calibrate(reference, days, data.spec),
    )


def older_windows(config: NexusConfig, data: TrainingDataset) -> list[TrainingDataset]:
    """The older windows (`training.selection_windows`) a family is scored on besides the validation part; a
    classifier's learn every class, so each window's models vote over the same classes."""
    classifier = config.dataset.task != "regression"
    return data.older_windows(
        config.training.selection_windows - 1,
        config.training.min_rows,
        config.training.seed,
        config.dataset.target if classifier else None,
    )


def _candidate_models(config: NexusConfig) -> dg.AssetsDefinition:
    @dg.asset(
        key=config.asset("candidate_models"),
        ins=inputs(config, "training_dataset"),
        group_name="training",
        kinds={"scikit-learn", "mlflow"},
        code_version="3",
    )
    def candidate_models(
        context: dg.AssetExecutionContext,
        training_dataset: TrainingDataset,
        mlflow: MlflowResource,
        compute: Compute,
        parquet_io_manager: dg.ResourceParam[ParquetIOManager],
    ) -> dg.MaterializeResult[list[Candidate]]:
        """Each configured model family trained on the window and tracked in its own MLflow run."""
        data = training_dataset
        try:
            check_trainable(config, data)
        except ValueError as exc:
            raise dg.Failure(description=f"not training: {exc}") from exc
        window, families = _window(config, data), config.model.candidates
        fit = _Fitting(config, context, data, compute, parquet_io_manager.files())
        candidates, fitted, failed, skipped = [], {}, {}, []
        for number, family in enumerate(families, 1):
            seconds = (fit.end - time.monotonic()) / (len(families) - number + 1)  # what is left, shared
            if seconds <= 0:
                context.log.warning(f"{family} is left out: training.time_budget_seconds was spent before its turn")
                skipped.append(family)
                continue
            context.log.info(f"[{number}/{len(families)}] training {family} (up to {seconds:.0f} s)")
            try:
                candidate, fitted[family] = _train(config, context, mlflow, data, window, family, fit, seconds)
                candidates.append(candidate)
            except _FitFailed as exc:
                context.log.warning(f"{family} is left out: it failed to fit ({exc}); the other families go on")
                failed[family] = str(exc)
        if not candidates:
            raise dg.Failure(description=f"no family was fitted: failed {failed}, out of time {skipped}")
        if config.model.ensemble and len(fitted) > 1:
            candidates += _ensemble(config, context, mlflow, data, window, fitted)
        if all(np.isnan(c.selection_score(config.metric)) for c in candidates):
            raise dg.Failure(
                description=f"cannot choose a challenger: {unscorable(config.metric, window.y_val, 'validation')}"
            )
        return dg.MaterializeResult(
            value=candidates,
            metadata={
                "comparison": dg.MetadataValue.md(_comparison(config, mlflow, window, candidates, failed, skipped)),
                "selection_metric": config.metric,
            },
        )

    return candidate_models


class _FitFailed(Exception):
    """A family could not be fitted on this window; its MLflow run is marked failed."""


@dataclass
class _Fitting:
    """Fits a family on the window in the run's process; LightGBM on the Dask cluster over the whole training
    history when `compute.engine` is dask and the history is longer than the window (`training.max_rows`)."""

    config: NexusConfig
    context: dg.AssetExecutionContext
    data: TrainingDataset
    compute: Compute
    features: PartitionFiles
    end: float = 0.0  # when `training.time_budget_seconds` is spent (`time.monotonic()`)

    def __post_init__(self) -> None:
        self.end = time.monotonic() + self.config.training.time_budget_seconds

    def __call__(
        self, family: str, seconds: float, data: TrainingDataset | None = None
    ) -> tuple[Pipeline, Stopped | None]:
        """The family fitted on the window (or on `data`, an older window's, in this process) within `seconds` if it
        can stop early, and how far it got if it had to."""
        config, window = self.config, self.data
        model = estimator(family, config.dataset.task, config.model.seed)
        if data is not None or not (
            family == "lightgbm" and config.compute.engine == "dask" and cluster.beyond_window(window)
        ):
            return budgeted(config, data or window, model, time.monotonic() + seconds)
        self.context.log.info(
            f"training lightgbm on the Dask cluster at {config.compute.address} over {len(window.history)} partitions"
            f" ({len(window.partition_rows['train'])} in the window of training.max_rows={config.training.max_rows})"
        )
        with self.compute.client(config) as client:
            fitted, rows = cluster.fit_on_cluster(config, window, model, self.features, client)
        log_params({"trained_on": f"dask: {len(window.history)} partitions", "training_rows": rows})
        return fitted, None  # the cluster's collective training runs to its end


def _train(
    config: NexusConfig,
    context: dg.AssetExecutionContext,
    mlflow: MlflowResource,
    data: TrainingDataset,
    window: _Window,
    family: str,
    fit: _Fitting,
    seconds: float,
) -> tuple[Candidate, list[Pipeline]]:
    """One family fitted on the window within `seconds`, tracked in its own run; with the models refitted on the
    rows before each older window, which share the seconds by their rows."""
    tags = {**window.lineage, "nexus.family": family}
    end = time.monotonic() + seconds
    share = len(data.train) / (len(data.train) + sum(len(w.data.train) for w in window.older))
    with mlflow.start_run(context, config.dataset.name, family, tags):
        try:
            model, stopped = fit(family, seconds * share)
            older = [fit(family, end - time.monotonic(), w.data)[0] for w in window.older]
        except dg.Failure:
            raise
        except Exception as exc:  # this family's own trouble with the data or its settings: the others may cope
            set_tag("nexus.fit_error", f"{type(exc).__name__}: {exc}"[:5000])
            raise _FitFailed(f"{type(exc).__name__}: {exc}") from exc
        params = {k: v for k, v in model.named_steps["model"].get_params().items() if _simple(v)}
        if stopped is not None:
            context.log.warning(f"{family} {stopped} ({seconds:.0f} s); it competes with what it learned")
            params["iterations_fitted"] = stopped.iterations
            tags = {**tags, "nexus.time_budget": str(stopped)}
            set_tag("nexus.time_budget", str(stopped))
        models = [model, *older]
        return _tracked(config, data, window, family, models, params, tags), models


def _ensemble(
    config: NexusConfig,
    context: dg.AssetExecutionContext,
    mlflow: MlflowResource,
    data: TrainingDataset,
    window: _Window,
    fitted: dict[str, list[Pipeline]],
) -> list[Candidate]:
    """The families' weighted average as one more candidate, in its own run; none when one family alone scores
    best over the selection windows."""
    windows = [(window.X_val, window.y_val), *((w.X, w.y) for w in window.older)]
    models = selection.select(config, fitted, windows)
    if models is None:
        context.log.info("no ensemble: over the selection windows no average of the families beats the best one alone")
        return []
    shares = weights(models[0])
    context.log.info(f"training {ENSEMBLE}: {_shares(shares)}")
    tags = {**window.lineage, "nexus.family": ENSEMBLE, "nexus.ensemble": _shares(shares)}
    with mlflow.start_run(context, config.dataset.name, ENSEMBLE, tags):
        params = {"members": _shares(shares), "selection_rounds": selection.ROUNDS}
        return [_tracked(config, data, window, ENSEMBLE, models, params, tags)]


def _tracked(
    config: NexusConfig,
    data: TrainingDataset,
    window: _Window,
    family: str,
    models: list[BaseEstimator],
    params: dict,
    tags: dict[str, str],
) -> Candidate:
    """A fitted model (the first of `models`, the others as fitted for each older window) scored and logged in the
    active run (tagged `tags`), with its threshold, reference and drift calibration."""
    objective, w, model = _objective(config.model.threshold), window, models[0]
    threshold = choose_threshold(config.model.threshold, model, w.X_val, w.y_val)
    if threshold is not None:  # travels inside the artifact: batch scoring and serving apply it too
        for fitted in models:  # the older windows' models are scored as the candidate decides
            setattr(fitted, THRESHOLD, threshold)
        log_params({"decision_threshold": threshold, "threshold_objective": objective})
    task = config.dataset.task
    validation, holdout = evaluate(task, model, w.X_val, w.y_val), evaluate(task, model, w.X_hold, w.y_hold)
    older = [evaluate(task, fitted, o.X, o.y) for fitted, o in zip(models[1:], w.older, strict=True)]
    log_params(params)
    log_metrics(
        {
            f"{part}_{k}": v
            for part, scores in [("validation", validation), ("holdout", holdout)]
            + [(f"older_window_{n}", scores) for n, scores in enumerate(older, 1)]
            for k, v in scores.items()
            if not np.isnan(v)
        }
    )
    info = log_pipeline(
        model,
        family,
        w.example,
        {"decision_threshold": threshold, "threshold_objective": objective} if threshold is not None else None,
    )
    log_reference(w.reference)
    usual = drift.calibrate_predictions(model, w.reference, w.days, data.spec)
    log_dict(w.usual_data | usual, CALIBRATION_ARTIFACT)
    if threshold is not None:
        tags = {**tags, "nexus.decision_threshold": f"{threshold:.6g} ({objective})"}
    return Candidate(family, active_run().info.run_id, info.model_uri, validation, holdout, tags, threshold, older)


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{family} {share:.2f}" for family, share in shares.items())


def _comparison(
    config: NexusConfig,
    mlflow: MlflowResource,
    window: _Window,
    candidates: list[Candidate],
    failed: dict[str, str],
    skipped: list[str],
) -> str:
    metric = config.metric
    table = pd.DataFrame(
        [
            {
                "family": c.family,
                **({"threshold": c.threshold} if c.threshold is not None else {}),
                **{f"validation {k}": v for k, v in c.validation.items()},
                **{f"older window {n} {metric}": scores[metric] for n, scores in enumerate(c.older, 1)},
                **({f"selection {metric}": c.selection_score(metric)} if c.older else {}),
                f"holdout {metric}": c.holdout.get(metric),
                "mlflow run": f"[{c.run_id[:8]}]({mlflow.run_url(c.run_id)})",
            }
            for c in candidates
        ]
    )
    notes = _selection_notes(config, window, candidates)
    notes += [
        f"Stopped early: {c.family} {c.tags['nexus.time_budget']}" for c in candidates if "nexus.time_budget" in c.tags
    ]
    notes += [f"Left out, failed to fit: {family} ({error})" for family, error in failed.items()]
    budget = config.training.time_budget_seconds
    notes += [
        f"Left out, out of time: {family} (training.time_budget_seconds={budget:g} was spent)" for family in skipped
    ]
    return "\n\n".join([table.to_markdown(index=False, floatfmt=".4f"), *notes])


def _selection_notes(config: NexusConfig, window: _Window, candidates: list[Candidate]) -> list[str]:
    """How the challenger is chosen, and where the validation part alone would mislead."""
    metric, wanted = config.metric, config.training.selection_windows - 1
    if not window.older:
        return [f"Chosen on the validation part alone ({len(window.y_val)} rows)"] + (
            [
                f"No older window: training.selection_windows={wanted + 1} asks for {wanted}, but the training part "
                "is too short to cut one of the validation part's length and train before it (or lacks a class there)"
            ]
            if wanted
            else []
        )
    notes = [
        f"Chosen by the average {metric} over {len(window.older) + 1} windows of {len(window.y_val)} rows: the "
        f"validation part and {len(window.older)} older window(s) cut from the end of the training part, each scored "
        "by the family refitted on the rows before it (training.selection_windows)"
    ]
    scored = [c for c in candidates if not np.isnan(c.selection_score(metric))]
    if scored:
        by_average = _best(config, scored, lambda c: c.selection_score(metric))
        by_validation = _best(config, scored, lambda c: c.validation[metric])
        if by_average is not by_validation:
            notes.append(
                f"The validation part alone would have chosen {by_validation.family}; over the windows "
                f"{by_average.family} scores best"
            )
    for c in scored:
        average, newest = c.selection_score(metric), c.validation[metric]
        if abs(newest - average) > FAR * abs(average):
            notes.append(
                f"{c.family}'s validation {metric} ({newest:.4f}) is far from its average over the windows "
                f"({average:.4f}): the validation part may be another season or regime than the rows before it"
            )
    return notes


def _best(config: NexusConfig, candidates: list[Candidate], score: Callable[[Candidate], float]) -> Candidate:
    """The candidate `score` ranks best by the selection metric's direction (NaN last, ties to the earlier)."""
    sign = 1 if metrics_for(config.dataset.task)[config.metric].higher_is_better else -1
    return max(candidates, key=lambda c: np.nan_to_num(sign * score(c), nan=-np.inf))


def _challenger_model(config: NexusConfig) -> dg.AssetsDefinition:
    name = config.model.registered_name

    @dg.asset(
        key=config.asset("challenger_model"),
        ins=inputs(config, "candidate_models"),
        group_name="training",
        kinds={"mlflow"},
        code_version="1",
    )
    def challenger_model(candidate_models: list[Candidate], mlflow: MlflowResource) -> dg.MaterializeResult[dict]:
        """The best candidate by the selection metric over the selection windows, registered as a new version with
        the `challenger` alias."""
        scored = [c for c in candidate_models if not np.isnan(c.selection_score(config.metric))]
        best = _best(config, scored, lambda c: c.selection_score(config.metric))
        client = mlflow.client()
        with mlflow.reporting_failures(f"register {name}"):
            version = registry.register(
                client,
                name,
                best.model_uri,
                best.run_id,
                {**best.tags, f"nexus.validation.{config.metric}": str(best.validation[config.metric])},
            )
            client.set_registered_model_alias(name, registry.CHALLENGER, version)
        challenger = {
            "name": name,
            "version": version,
            "run_id": best.run_id,
            "family": best.family,
            "validation": best.validation,
            "holdout": best.holdout,
            "decision_threshold": best.threshold,
        }
        return dg.MaterializeResult(
            value=challenger,
            metadata={
                "registered_model": name,
                "version": dg.MetadataValue.int(int(version)),
                "family": best.family,
                config.metric: best.validation[config.metric],
                f"selection_{config.metric}": best.selection_score(config.metric),
                **({"decision_threshold": best.tags["nexus.decision_threshold"]} if best.threshold is not None else {}),
                "mlflow_version": dg.MetadataValue.url(mlflow.version_url(name, version)),
                "mlflow_run": dg.MetadataValue.url(mlflow.run_url(best.run_id)),
            },
        )

    return challenger_model


def _lineage_tags(data: TrainingDataset) -> dict[str, str]:
    tags = {
        "nexus.data_hash": data.manifest["window_hash"],
        "nexus.holdout_hash": data.manifest["holdout"]["content_hash"],
    }
    if "partitions" in data.manifest["train"]:
        tags["dagster.partition_range"] = (
            f"{data.manifest['train']['partitions'][0]}...{data.manifest['holdout']['partitions'][1]}"
        )
    return tags


def _objective(setting: ThresholdConfig) -> str:
    """The threshold's objective as the UI and `GET /model` show it."""
    if setting.objective == "recall":
        return f"recall >= {setting.min_recall}"
    if setting.objective == "cost":
        return f"cost (false positive {setting.false_positive_cost}, false negative {setting.false_negative_cost})"
    return setting.objective


def _simple(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None
