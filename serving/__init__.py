"""The BentoML service of the champion and what it needs to load, check and batch a model version."""

from nexus_assets.lib.processes import venv_bin

SERVICE = "serving.service:NexusModelService"


def serve_command(port: int) -> list[str]:
    """`bentoml serve` of the service on 127.0.0.1:`port`."""
    return [venv_bin("bentoml"), "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
