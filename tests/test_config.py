"""nexus.yaml is validated when loaded, and every error names the file and the key."""

import pytest
import yaml

from nexus_resources import settings
from nexus_resources.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from tests.conftest import SMALL_CONFIG, merge


def test_repo_config_loads():
    config = load_config()
    assert config.path == DEFAULT_CONFIG_PATH
    assert config.dataset.target == "churned" and config.partitioned


def test_nexus_config_env_var_selects_the_file(tmp_path, monkeypatch):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(merge(SMALL_CONFIG, {"dataset": {"name": "elsewhere"}})))
    monkeypatch.setenv("NEXUS_CONFIG", str(path))
    assert load_config().dataset.name == "elsewhere"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"dataset": {"target": None}}, "dataset.target: required key is missing"),
        ({"dataset": {"source": {"kind": "ftp"}}}, "dataset.source: unknown source kind 'ftp'"),
        ({"dataset": {"task": "clustering"}}, "dataset.task"),
        ({"dataset": {"start_date": None}}, "start_date is required"),
        ({"model": {"registered_name": None}}, "model.registered_name: required key is missing"),
        ({"training": {"window_dayz": 3}}, "training.window_dayz: unknown key"),
        ({"checks": {"max_null_rate": 2}}, "checks.max_null_rate"),
    ],
)
def test_bad_config_names_the_key_and_file(tmp_path, changes, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(merge(SMALL_CONFIG, changes)))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert expected in str(error.value)
    assert str(path) in str(error.value)


def test_malformed_yaml_is_reported(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("dataset:\n  name: [unclosed\n  target: x\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"set NEXUS_CONFIG or create nexus\.yaml"):
        load_config(tmp_path / "absent.yaml")


def test_unknown_mode_is_rejected(monkeypatch):
    monkeypatch.setenv("NEXUS_MODE", "cloudy")
    with pytest.raises(ConfigError, match="NEXUS_MODE must be"):
        settings.build_resources()


def test_production_mode_names_missing_environment(monkeypatch):
    monkeypatch.setenv("NEXUS_MODE", "production")
    monkeypatch.delenv("NEXUS_S3_BUCKET", raising=False)
    with pytest.raises(ConfigError, match="NEXUS_S3_BUCKET"):
        settings.build_resources()
