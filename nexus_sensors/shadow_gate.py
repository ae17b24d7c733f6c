"""`shadow_gate_sensor`: a challenger the gate held back for its shadow record is judged again once the record is
complete (`model.gate.min_shadow_rows` labelled live requests in `shadow_comparison`)."""

import dagster as dg

from nexus_core import names, registry
from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource

AWAITING = "awaiting_shadow"


def build_shadow_gate_sensor(config: NexusConfig, interval: int | None = None) -> dg.SensorDefinition:
    name, minimum = config.model.registered_name, config.model.gate.min_shadow_rows

    @dg.sensor(
        name=config.named(names.SHADOW_GATE_SENSOR),
        job_name=config.named(names.GATE_JOB),
        minimum_interval_seconds=60 if interval is None else interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Runs the gate again for a challenger of {name} that waited for {minimum} labelled shadow "
        "predictions, once it has them.",
    )
    def shadow_gate_sensor(mlflow: MlflowResource, app_db: AppDatabase) -> dg.SensorResult:
        challenger = (mlflow.aliases(name) or {}).get(registry.CHALLENGER)
        waiting = [d for d in app_db.decisions(name, limit=5) if d["challenger_version"] == challenger]
        if challenger is None or not waiting or waiting[0]["decision"] != AWAITING:
            return dg.SensorResult(skip_reason=f"no challenger of {name} waits for its shadow record")
        shadowed = int(app_db.shadow_record(name, challenger)["labelled"].sum())
        if shadowed < minimum:
            return dg.SensorResult(
                skip_reason=f"challenger v{challenger}: {shadowed} of {minimum} labelled shadow predictions"
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{name}:v{challenger}:shadow:{shadowed}",
                    tags={
                        names.TRIGGER: names.SHADOW_GATE_SENSOR,
                        names.MODEL_VERSION: challenger,
                        names.REASON: f"{shadowed} labelled shadow predictions of v{challenger}",
                    },
                )
            ]
        )

    return shadow_gate_sensor
