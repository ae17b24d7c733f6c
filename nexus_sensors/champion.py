"""`champion_alias_sensor`: deploys whatever the registry's `champion` alias points at, once per move."""

import json

import dagster as dg

from nexus_core import names, registry
from nexus_core.config import NexusConfig
from nexus_resources.instance import latest_metadata
from nexus_resources.mlflow import MlflowResource

NOTHING_TRAINED = "nothing trained yet: no MLflow tracking store; the first training run creates it"


def build_champion_alias_sensor(config: NexusConfig, interval: int | None = None) -> dg.SensorDefinition:
    name = config.model.registered_name

    @dg.sensor(
        name=config.named(names.CHAMPION_ALIAS_SENSOR),
        job_name=config.named(names.DEPLOY_JOB),
        minimum_interval_seconds=10 if interval is None else interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Polls the aliases of {name} in MLflow; when `champion` moves, one run deploys it.",
    )
    def champion_alias_sensor(context: dg.SensorEvaluationContext, mlflow: MlflowResource) -> dg.SensorResult:
        # The cursor holds the last aliases seen, so a restarted daemon never deploys the same move twice; without
        # one (a new daemon over the demo's instance), the version already deployed is not deployed again.
        seen = json.loads(context.cursor) if context.cursor else {"aliases": _deployed(context.instance, config)}
        # Without a tracking store nothing was trained yet, unless it deployed a champion: then the store is gone.
        current = mlflow.aliases(name, missing_ok=not seen.get("aliases"))
        if current is None:
            return dg.SensorResult(skip_reason=NOTHING_TRAINED)
        if current == seen.get("aliases"):
            return dg.SensorResult(skip_reason=f"aliases of {name} unchanged: {current or 'none yet'}")
        events = [
            dg.AssetObservation(
                asset_key=config.asset("registered_model"), metadata={"aliases": dg.MetadataValue.json(current)}
            )
        ]
        champion, deploys = current.get(registry.CHAMPION), seen.get("deploys", 0)
        runs = []
        if champion is not None and champion != seen.get("aliases", {}).get(registry.CHAMPION):
            deploys += 1
            runs.append(
                dg.RunRequest(
                    run_key=f"{name}:v{champion}:deploy-{deploys}",
                    run_config={"ops": {"serving_bento": {"config": {"version": champion}}}},
                    tags={names.MODEL_VERSION: champion, names.TRIGGER: names.CHAMPION_ALIAS_SENSOR},
                )
            )
            context.log.info(f"{name}: champion is now version {champion}; requesting a deploy")
        cursor = json.dumps({"aliases": current, "deploys": deploys})
        skipped = None if runs else f"champion of {name} still version {champion}; aliases now {current}"
        return dg.SensorResult(run_requests=runs, cursor=cursor, asset_events=events, skip_reason=skipped)

    return champion_alias_sensor


def _deployed(instance: dg.DagsterInstance, config: NexusConfig) -> dict[str, str]:
    """The champion alias as of the last successful deploy, if any."""
    version = latest_metadata(instance, config.asset(names.DEPLOY[0])).get("model_version")
    return {registry.CHAMPION: version} if version else {}
