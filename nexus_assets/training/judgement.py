"""The gate's judgement of a challenger on the frozen holdout, and how the decision is shown and recorded."""

from __future__ import annotations

import math
import statistics
import time

import dagster as dg
import matplotlib.pyplot as plt
import pandas as pd
from mlflow.tracking import MlflowClient

from nexus_assets.features.split import TrainingDataset
from nexus_assets.lib import plots  # before pyplot is used: it chooses the Agg backend
from nexus_assets.training.backtest import backtest
from nexus_assets.training.candidates import baseline
from nexus_assets.training.gate import GateDecision, Rule, decide, guardrail_table, slice_scores
from nexus_assets.training.metrics import evaluate, evaluate_output, metrics_for, paired_gain_interval
from nexus_core.config import NexusConfig
from nexus_core.features import model_inputs
from nexus_core.inference import classes as model_classes
from nexus_core.inference import predict


def judge(
    config: NexusConfig,
    rule: Rule,
    models: dict[str, object],
    data: TrainingDataset,
    already_champion: bool,
    validation_score: float,
) -> tuple[GateDecision, dict[str, dict[str, float]], dict[str, object]]:
    """The decision on `models` ({"challenger": ..., reference: ...}), every metric of each on the holdout, and
    each one's holdout predictions."""
    task, metric, gate = config.dataset.task, metrics_for(config.dataset.task)[config.metric], config.model.gate
    X, y = model_inputs(data.holdout, data.spec), data.holdout[config.dataset.target]
    reference = next(label for label in models if label != "challenger")
    # One predict per model on the holdout: the scores, the interval and the plot all use it.
    outputs = {label: (*predict(model, X), model_classes(model)) for label, model in models.items()}
    scores = {label: evaluate_output(task, output, y) for label, output in outputs.items()}
    pair = (outputs["challenger"], outputs[reference])
    interval = paired_gain_interval(metric, y, pair, rule.confidence, seed=config.model.seed)
    slices = (
        slice_scores(task, metric, models, data.holdout, y, gate.slice_column, gate.min_slice_rows)
        if gate.slice_column
        else pd.DataFrame()
    )
    challenger_score, reference_score = scores["challenger"][config.metric], scores[reference][config.metric]
    if rule.max_predict_ms is not None:
        for label, model in models.items():
            scores[label]["predict_ms"] = predict_ms(model, X)
    guardrails = guardrail_table(rule, metrics_for(task), scores["challenger"], scores[reference])
    memory = None
    if len(data.older):
        older, y_older = model_inputs(data.older, data.spec), data.older[config.dataset.target]
        scored = [evaluate(task, models[label], older, y_older)[metric.name] for label in ("challenger", reference)]
        memory = (*scored, len(older))
    if already_champion:
        reason = "the challenger already holds the champion alias"
        verdict = GateDecision(False, reason, reference, challenger_score, reference_score, slices, interval)
    else:
        evidence = None
        if reference == "baseline" and gate.backtest_folds and not rule.clears(interval, reference_score):
            target, seed = config.dataset.target, config.model.seed
            challenger = models["challenger"]
            evidence = backtest(metric, task, target, challenger, data, gate.backtest_folds, rule.confidence, seed)
        verdict = decide(
            metric,
            rule,
            challenger_score,
            reference_score,
            reference,
            slices,
            interval,
            validation_score,
            guardrails,
            evidence,
            memory,
            _harder(config, data),
        )
    return verdict, scores, {label: output[0] for label, output in outputs.items()}


def _harder(config: NexusConfig, data: TrainingDataset) -> float:
    """How much worse the trivial baseline does on the holdout than on validation, as a share: what of a model's
    fall between the two periods the periods themselves explain."""
    task, metric, target = config.dataset.task, metrics_for(config.dataset.task)[config.metric], config.dataset.target
    trivial = baseline(task).fit(model_inputs(data.train, data.spec), data.train[target])
    before, after = (
        evaluate(task, trivial, model_inputs(part, data.spec), part[target])[metric.name]
        for part in (data.validation, data.holdout)
    )
    return -metric.gain(after, before) / abs(before) if before else 0.0


def predict_ms(model, X: pd.DataFrame, calls: int = 25) -> float:
    """The median time, in milliseconds, of `model` predicting one record (as a request would)."""
    row = X.head(1)
    predict(model, row)  # warm-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predict(model, row)
        times.append((time.perf_counter() - start) * 1000)
    return float(statistics.median(times))


def tag_decision(client: MlflowClient, name: str, version: str, verdict: GateDecision, data: TrainingDataset) -> None:
    """The decision as tags on the model version, so the registry tells it too."""
    tags = {
        "nexus.gate.decision": verdict.label,
        "nexus.gate.reason": verdict.reason[:5000],
        "nexus.gate.reference": verdict.reference,
        "nexus.holdout_hash": data.manifest["holdout"]["content_hash"],
        "nexus.holdout.score": str(verdict.challenger_score),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def keep_plot(config: NexusConfig, client: MlflowClient, run_id: str, y, predictions: dict[str, object]) -> str:
    """The comparison's plot (confusion matrices, or residuals for a regression) as a PNG in the challenger's MLflow
    run; its artifact path."""
    regression = config.dataset.task == "regression"
    figure = (plots.residuals if regression else plots.confusion_matrices)(y, predictions)
    path = f"gate/{'residuals' if regression else 'confusion_matrices'}.png"
    client.log_figure(run_id, figure, path)
    plt.close(figure)
    return path


def decision_metadata(
    config: NexusConfig,
    verdict: GateDecision,
    scores: dict[str, dict[str, float]],
    predictions: dict[str, object],
    data: TrainingDataset,
    champion: dict,
    validation_score: float,
) -> dict[str, dg.MetadataValue]:
    """The comparison table, confusion matrices (or residuals) and the reason, for the Dagster UI."""
    y = data.holdout[config.dataset.target]
    table = pd.DataFrame(scores).rename_axis("metric")
    low, high = verdict.interval
    text = [
        f"**{verdict.label.replace('_', ' ').capitalize()}**: {verdict.reason}",
        "",
        f"Holdout: {len(y)} rows, content hash `{data.manifest['holdout']['content_hash'][:16]}`",
        "",
        f"Challenger {config.metric}: validation {validation_score:.4f}, holdout {verdict.challenger_score:.4f}; "
        f"gain over {verdict.reference}: {config.model.gate.confidence:.0%} interval {low:+.4f} to {high:+.4f}",
        "",
        table.to_markdown(floatfmt=".4f"),
    ]
    if not verdict.slices.empty:
        text += ["", "Per slice:", "", verdict.slices.to_markdown(index=False, floatfmt=".4f")]
    if not verdict.guardrails.empty:
        text += ["", "Guardrails:", "", verdict.guardrails.to_markdown(index=False, floatfmt=".4f")]
    if verdict.memory is not None:
        new, old, rows = verdict.memory
        text += [
            "",
            f"On {rows} rows older than the validation period: challenger {new:.4f}, {verdict.reference} {old:.4f}",
        ]
    if verdict.backtest is not None:
        folds = verdict.backtest.folds
        text += ["", "Backtest over the training history (rows before each fold train it):", ""]
        text += [folds.to_markdown(index=False, floatfmt=".4f")]
    metadata = {
        "decision": verdict.label,
        "champion_version": str(champion["version"]),
        "comparison": dg.MetadataValue.md("\n".join(text)),
        f"challenger_{config.metric}": verdict.challenger_score,
        f"reference_{config.metric}": verdict.reference_score,
    }
    if not math.isnan(low):
        metadata["gain_interval"] = dg.MetadataValue.md(f"{low:+.4f} to {high:+.4f}")
    return metadata
