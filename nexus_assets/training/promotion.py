"""`champion_model`: the promotion gate, recorded in the registry, the audit log and the Dagster UI."""

from dataclasses import replace

import dagster as dg
import numpy as np

from nexus_assets.features.split import TrainingDataset
from nexus_assets.lib.keys import inputs
from nexus_assets.training import judgement
from nexus_assets.training.candidates import baseline, target
from nexus_assets.training.gate import GateDecision, Rule
from nexus_core import names, registry
from nexus_core.config import NexusConfig
from nexus_core.features import model_inputs
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource


def build_champion_model(config: NexusConfig) -> dg.AssetsDefinition:
    task, name, gate = config.dataset.task, config.model.registered_name, config.model.gate
    rule = gate_rule(config)

    @dg.asset(
        key=config.asset("champion_model"),
        ins=inputs(config, "training_dataset", "challenger_model"),
        group_name="training",
        kinds={"mlflow"},
        code_version="2",
    )
    def champion_model(
        context: dg.AssetExecutionContext,
        training_dataset: TrainingDataset,
        challenger_model: dict,
        mlflow: MlflowResource,
        app_db: AppDatabase,
    ) -> dg.MaterializeResult[dict]:
        """The promotion gate: `champion` moves to the challenger only if it beats the champion on the same holdout."""
        data, version = training_dataset, str(challenger_model["version"])
        # NaN for a challenger registered outside the chain: nothing to compare the holdout with
        validation_score = challenger_model.get("validation", {}).get(config.metric, np.nan)
        client = mlflow.client()
        with mlflow.reporting_failures("read the registry"):
            current = registry.aliases(client, name).get(registry.CHAMPION)
            challenger = registry.load_pipeline(f"models:/{name}/{version}")
            if current is None:
                reference_name = "baseline"
                reference = baseline(task).fit(model_inputs(data.train, data.spec), target(config, data.train))
            else:
                reference_name = f"champion v{current}"
                reference = registry.load_pipeline(f"models:/{name}/{current}")
        models = {"challenger": challenger, reference_name: reference}
        verdict, scores, predictions = judgement.judge(config, rule, models, data, current == version, validation_score)
        shadowed = int(app_db.shadow_record(name, version)["labelled"].sum()) if gate.min_shadow_rows else 0
        verdict = _held_back(config, verdict, version, shadowed, context.run.tags.get(names.TRIGGER))
        with mlflow.reporting_failures("move the champion alias"):
            if verdict.promoted:
                registry.promote(client, name, version)
            judgement.tag_decision(client, name, version, verdict, data)
        context.log.info(("PROMOTED: " if verdict.promoted else "kept the champion: ") + verdict.reason)
        app_db.record_decision(
            registered_model=name,
            decision=verdict.label,
            actor="gate",
            challenger_version=version,
            champion_version=current,
            metric=config.metric,
            challenger_score=verdict.challenger_score,
            champion_score=verdict.reference_score,
            margin=rule.required_gain(verdict.reference_score) if not np.isnan(verdict.reference_score) else None,
            reason=verdict.reason,
            dagster_run_id=context.run.run_id,
            details=_audit_details(config, verdict, reference_name, validation_score, data, scores),
        )
        champion = {
            "name": name,
            "version": version if verdict.promoted else current,
            "promoted": verdict.promoted,
            "reason": verdict.reason,
        }
        metadata = judgement.decision_metadata(config, verdict, scores, predictions, data, champion, validation_score)
        if champion["version"] is not None:
            metadata["champion_version"] = dg.MetadataValue.url(mlflow.version_url(name, champion["version"]))
        with mlflow.reporting_failures("keep the comparison's plot"):
            run_id = client.get_model_version(name, version).run_id
            plot = judgement.keep_plot(config, client, run_id, data.holdout[config.dataset.target], predictions)
        metadata["plot"] = dg.MetadataValue.url(mlflow.artifact_url(run_id, plot))
        return dg.MaterializeResult(value=champion, metadata=metadata)

    return champion_model


def gate_rule(config: NexusConfig) -> Rule:
    """The gate's settings with the task's defaults filled in."""
    gate = config.model.gate
    margin, relative = config.gate_margin
    return Rule(
        margin,
        relative,
        gate.slice_tolerance,
        gate.max_holdout_drop,
        gate.instability,
        gate.confidence,
        tuple(gate.guardrails.items()),
        gate.max_predict_ms,
        gate.max_memory_loss,
    )


def _held_back(
    config: NexusConfig, verdict: GateDecision, version: str, shadowed: int, trigger: str | None
) -> GateDecision:
    """A promotion that waits: for its shadow record on live traffic, or for approval of an automatic retrain."""
    gate = config.model.gate
    if verdict.promoted and shadowed < gate.min_shadow_rows:
        return replace(
            verdict,
            promoted=False,
            awaiting="shadow",
            reason=f"{verdict.reason}; but it has only {shadowed} labelled shadow predictions, fewer than "
            f"model.gate.min_shadow_rows={gate.min_shadow_rows}: it stays `challenger` while the service "
            "(NEXUS_SERVING_SHADOW_SHARE) or batch scoring (monitoring.shadow_batch) shadows it, and "
            "shadow_gate_sensor runs the gate again once the record is complete",
        )
    if verdict.promoted and config.monitoring.retraining.approval_required and trigger == names.RETRAINING_SENSOR:
        return replace(
            verdict,
            promoted=False,
            awaiting="approval",
            reason=f"{verdict.reason}; an automatic retrain needs approval: run `nexus promote {version}`",
        )
    return verdict


def _audit_details(
    config: NexusConfig,
    verdict: GateDecision,
    reference: str,
    validation_score: float,
    data: TrainingDataset,
    scores: dict,
) -> dict:
    """The evidence the audit log keeps beside the decision."""
    return {
        "reference": reference,
        "validation_score": validation_score,
        "gain_interval": list(verdict.interval),
        "confidence": config.model.gate.confidence,
        "holdout_hash": data.manifest["holdout"]["content_hash"],
        "scores": scores,
        "guardrails": verdict.guardrails.to_dict("records"),
        "backtest": verdict.backtest.record() if verdict.backtest is not None else None,
        "older_rows": dict(zip(("challenger", "reference", "rows"), verdict.memory, strict=True))
        if verdict.memory
        else None,
    }
