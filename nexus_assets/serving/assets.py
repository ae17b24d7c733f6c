"""`registered_model` and `serving_bento`: the registry as Dagster sees it, and the champion packaged to serve."""

import json
import time
import urllib.request

import bentoml
import dagster as dg

from nexus_assets.lib.metadata import key_values
from nexus_core import registry
from nexus_core.config import NexusConfig
from nexus_core.settings import load_settings
from nexus_resources.mlflow import MlflowResource
from serving.bento import build as build_bento
from serving.model import load_version


class DeployConfig(dg.Config):
    version: str | None = None  # default: whatever holds `champion` in the registry now
    wait_seconds: float = 60.0


def build_serving_assets(config: NexusConfig) -> list:
    name, dataset, config_prefix = config.model.registered_name, config.dataset.name, config.prefix
    registered_model = dg.AssetSpec(
        config.asset("registered_model"),
        deps=[config.asset("champion_model")],
        group_name="serving",
        kinds={"mlflow"},
        description=f"The MLflow registered model {name}; observed whenever one of its aliases moves.",
    )

    @dg.asset(
        key=config.asset("serving_bento"),
        group_name="serving",
        kinds={"bentoml"},
        code_version="1",
        deps=[registered_model, config.asset("champion_model")],
    )
    def serving_bento(
        context: dg.AssetExecutionContext, config: DeployConfig, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        """The champion version checked, imported into the BentoML model store and built into a Bento."""
        client = mlflow.client()
        with mlflow.reporting_failures("read the champion alias"):
            version = config.version or registry.aliases(client, name).get(registry.CHAMPION)
        if version is None:
            raise dg.Failure(f"{name} has no {registry.CHAMPION!r} version to deploy yet; run the training chain")
        try:
            served = load_version(client, name, version)
        except Exception as exc:
            raise dg.Failure(
                f"version {version} of {name} cannot serve ({type(exc).__name__}: {exc}); "
                "running services keep the version they serve"
            ) from exc
        model = _import_model(name, version)
        labels = {"registered_model": name, "model_version": version}
        bento = build_bento("-".join([*config_prefix, f"v{version}"]).lower(), labels, [str(model.tag)])
        context.log.info(f"built {bento.tag} with {model.tag}")
        metadata = {
            "model_version": version,
            "mlflow_version": dg.MetadataValue.url(mlflow.version_url(name, version)),
            "bento": str(bento.tag),
            "bentoml_model": str(model.tag),
            "bento_path": dg.MetadataValue.path(bento.path),
            "model_info": key_values({k: v for k, v in served.info.items() if k != "loaded_at"}),
        }
        # one service per model in a deployment of many: `{dataset}` in the URL names this dataset's
        if url := (load_settings().serving_url or "").replace("{dataset}", dataset):
            metadata["service"] = dg.MetadataValue.url(url)
            metadata["swap_seconds"] = _wait_until_served(url, version, config.wait_seconds)
        return dg.MaterializeResult(metadata=metadata)

    return [registered_model, serving_bento]


def _import_model(name: str, version: str) -> bentoml.Model:
    tag = f"{name}:v{version}"
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return bentoml.mlflow.import_model(tag, f"models:/{name}/{version}", labels={"mlflow_version": version})


def _wait_until_served(url: str, version: str, timeout: float) -> float:
    """Wait for the running service to answer with `version`; fail with its reason if it refused it."""
    started, refused = time.monotonic(), {}
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{url}/model", timeout=5) as response:
                info = json.load(response)
        except OSError:
            info = {}
        if info.get("version") == version:
            return round(time.monotonic() - started, 2)
        refused = info.get("refused") or {}
        if refused.get("version") == version and refused.get("kind") == "content":
            raise dg.Failure(
                f"the service refused version {version}: {refused.get('reason')}; "
                f"it keeps serving version {info.get('version')}"
            )
        time.sleep(0.5)
    why = f": {refused['reason']} (retrying)" if refused.get("version") == version else ""
    raise dg.Failure(f"the service at {url} did not pick up version {version} within {timeout:.0f} s{why}")
