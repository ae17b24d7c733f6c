"""The alert rules (docker/prometheus/alerts.yml) under promtool's unit tests, each firing and staying silent;
the Prometheus, Alertmanager and Blackbox configurations the stack and compose use are valid; each alert has its
runbook line in docs/deploy.md."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nexus_cli.stack import alertmanager_config

DOCKER = Path(__file__).resolve().parent.parent / "docker"
PROMETHEUS = DOCKER / "prometheus"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make system` installs it from Debian")
    return path


def _run(*command: str, cwd: Path | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for rule in group["rules"]
    ]


def test_every_alert_rule_passes_its_promtool_tests():
    out = _run(_tool("promtool"), "test", "rules", "alerts.test.yml", cwd=PROMETHEUS)
    assert "SUCCESS" in out


def test_every_alert_is_tested_firing_and_silent_and_says_what_and_where():
    rules = _rules()
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    for rule in rules:
        name = rule["alert"]
        assert name in fires, f"{name} is never tested firing"
        assert name in silent, f"{name} is never tested staying silent"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["runbook"] == f"docs/deploy.md#{name.lower()}"


def test_each_alert_has_a_runbook_line_in_the_deploy_doc():
    doc = (DOCKER.parent / "docs" / "deploy.md").read_text()
    rules = _rules()
    missing = [rule["alert"] for rule in rules if f"### {rule['alert']}" not in doc]
    assert missing == [], f"docs/deploy.md has no runbook section for {missing}"


def test_the_prometheus_alertmanager_and_blackbox_configurations_are_valid(tmp_path):
    _run(_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    for name, url in (("webhook", "http://127.0.0.1:9/hook"), ("none", None)):
        config = tmp_path / f"alertmanager-{name}.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(url)))
        _run(_tool("amtool"), "check-config", str(config))
    blackbox = _tool("prometheus-blackbox-exporter")
    _run(blackbox, f"--config.file={DOCKER / 'blackbox' / 'blackbox.yml'}", "--config.check")
