"""nexus.yaml is validated when loaded, and every error names the file and the key."""

import pytest
import yaml

from nexus_core.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from nexus_resources import modes
from tests.conftest import SMALL_CONFIG, merge


def test_repo_config_loads():
    config = load_config()
    assert config.path == DEFAULT_CONFIG_PATH
    assert config.dataset.target == "churned" and config.dataset.timestamp == "event_time"


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
        ({"dataset": {"start_date": None}}, "start_date is required when a timestamp column drives the partitions"),
        ({"dataset": {"partitions": "hourly"}}, "dataset.partitions"),
        ({"model": {"registered_name": None}}, "model.registered_name: required key is missing"),
        ({"training": {"window_dayz": 3}}, "training.window_dayz: unknown key"),
        (
            {"training": {"cut_at_change": True}},
            "training.cut_at_change: unknown key; replaced by training.on_change (weight, cut or ignore; true was cut)",
        ),
        ({"checks": {"max_null_rate": 2}}, "checks.max_null_rate"),
        ({"dataset": {"owners": ["retention team"]}}, "dataset.owners.0"),
        (
            {"model": {"gate": {"guardrails": {"recal": 0.05}}}},
            "model.gate.guardrails: recal is not a metric of task 'binary_classification'; use some of roc_auc,",
        ),
        ({"model": {"gate": {"guardrails": {"f1": -0.1}}}}, "model.gate.guardrails.f1"),
        ({"model": {"threshold": {"objective": "recall"}}}, "model.threshold: objective recall needs min_recall"),
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
    with pytest.raises(ConfigError, match="NEXUS_MODE: Input should be 'embedded' or 'production'"):
        modes.build_resources()


def test_production_mode_names_missing_environment(monkeypatch):
    monkeypatch.setenv("NEXUS_MODE", "production")
    monkeypatch.delenv("NEXUS_S3_BUCKET", raising=False)
    with pytest.raises(ConfigError, match="NEXUS_S3_BUCKET"):
        modes.build_resources()


def _write(tmp_path, raw, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw) if isinstance(raw, dict) else raw)
    return path


def _file_raw(**source) -> dict:
    raw = merge(SMALL_CONFIG, {"dataset": {"columns": None}, "checks": {"ranges": None}})
    raw["dataset"]["source"] = {"kind": "file", "path": "events.csv", **source}
    return raw


def test_bad_unquoted_date_names_the_key(tmp_path):
    text = yaml.safe_dump(SMALL_CONFIG).replace("start_date: '2026-01-01'", "start_date: 2026-13-01")
    assert "start_date: 2026-13-01" in text
    with pytest.raises(ConfigError, match=r"dataset\.start_date: .*month"):
        load_config(_write(tmp_path, text))


def test_unset_variable_names_the_variable_and_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WAREHOUSE_PASSWORD", raising=False)
    source = {"kind": "sql", "url": "postgresql://reader:${WAREHOUSE_PASSWORD}@db/shop", "query": "SELECT 1"}
    with pytest.raises(ConfigError, match=r"dataset\.source\.url: environment variable WAREHOUSE_PASSWORD is not set"):
        load_config(_write(tmp_path, merge(SMALL_CONFIG, {"dataset": {"source": source}})))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"dataset": {"source": {"kind": "file", "path": "absent.csv"}}}, "dataset.source.path: 'absent.csv'"),
        ({"dataset": {"target": "churn"}}, "dataset.target: column 'churn' is not in the header of"),
        ({"dataset": {"id_column": "cust"}}, "dataset.id_column: column 'cust' is not in the header"),
        ({"dataset": {"columns": {"numeric": ["age", "height"]}}}, "dataset.columns.numeric: column 'height'"),
        ({"checks": {"ranges": {"weight": {"min": 0}}}}, "checks.ranges: column 'weight' is not in the header"),
    ],
)
def test_file_source_problems_are_found_when_the_config_loads(tmp_path, changes, expected):
    (tmp_path / "events.csv").write_text("customer_id,event_time,age,plan,churned\n1,2026-01-01,40,basic,0\n")
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, merge(_file_raw(), changes)))
    assert expected in str(error.value) and str(tmp_path / "bad.yaml") in str(error.value)


def test_an_empty_file_is_named_when_the_config_loads(tmp_path):
    (tmp_path / "events.csv").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"dataset\.source\.path: .*events\.csv: the file is empty"):
        load_config(_write(tmp_path, _file_raw()))
