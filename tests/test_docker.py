"""The docker/ files: the compose file validates with the example env, and the image, the env example and the
deploy doc agree with it (no Docker engine here, so the image itself is not built)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"


@pytest.fixture(scope="module")
def compose(tmp_path_factory) -> dict:
    env = tmp_path_factory.mktemp("compose") / ".env"
    env.write_text((DOCKER / ".env.example").read_text())
    command = ["docker-compose", "--env-file", str(env), "-f", str(DOCKER / "docker-compose.yml"), "config"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_and_has_every_service_of_the_stack(compose):
    assert set(compose["services"]) == {
        "postgres", "minio", "minio-buckets", "mlflow", "nexus-user-code", "dagster-webserver", "dagster-daemon",
        "nexus-serving", "nexus-exporter", "prometheus", "alertmanager", "blackbox", "loki", "promtail", "grafana",
        "dask-scheduler", "dask-worker",
    }  # fmt: skip
    mlflow = compose["services"]["mlflow"]["command"]
    assert "--app-name=basic-auth" in mlflow and any(a.startswith("--backend-store-uri=postgresql://") for a in mlflow)


def test_compose_refuses_to_start_without_the_secrets(tmp_path):
    empty = tmp_path / ".env"
    empty.write_text("")
    command = ["docker-compose", "--env-file", str(empty), "-f", str(DOCKER / "docker-compose.yml"), "config"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0 and re.search(r"set \w+ in docker/.env", result.stderr), result.stderr


def test_every_variable_the_compose_file_needs_is_in_the_env_example_as_a_placeholder():
    needed = set(re.findall(r"\$\{(\w+)", (DOCKER / "docker-compose.yml").read_text()))
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines() if "=" in line)
    assert needed <= set(example), f"missing from .env.example: {needed - set(example)}"
    secrets = [k for k in example if k.endswith(("PASSWORD", "SECRET_KEY"))]
    assert secrets and all(example[k].startswith("replace-me") for k in secrets)


def test_the_images_stages_and_copied_paths_exist(compose):
    dockerfile = (DOCKER / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.MULTILINE))
    targets = {s["build"]["target"] for s in compose["services"].values() if "build" in s}
    assert targets <= stages
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"the Dockerfile copies {path}, which is not in the repo"


def test_deploy_doc_describes_every_service_and_variable_of_the_compose_file(compose):
    doc = (REPO / "docs" / "deploy.md").read_text()
    assert [s for s in compose["services"] if f"`{s}`" not in doc] == []
    nexus_env = compose["services"]["dagster-daemon"]["environment"]
    assert [v for v in nexus_env if f"`{v}`" not in doc] == []
