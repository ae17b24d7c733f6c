"""The single Definitions loads with the documented asset keys, and Dagster's own validator accepts it."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from nexus_defs.definitions import build_definitions

REPO = Path(__file__).resolve().parent.parent


def test_definitions_hold_the_data_assets_and_their_blocking_checks():
    graph = build_definitions().resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {
        "raw_data",
        "features",
        "training_dataset",
        "candidate_models",
        "challenger_model",
        "champion_model",
        "registered_model",
        "serving_bento",
        "batch_predictions",
        "ground_truth",
        "model_performance",
        "drift_report",
        "shadow_comparison",
    }
    checks = {
        key.name: graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
        if key.asset_key == dg.AssetKey("raw_data")
    }
    assert checks == {
        **dict.fromkeys(
            ["readable", "non_empty", "schema", "target_present", "target_valid", "null_rates", "value_ranges"], True
        ),
        "unique_ids": True,
        "in_range": False,  # rows that fall in no partition cannot block any one of them
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.description and node.kinds, key
        assert node.code_version or not node.is_executable, key


def test_unpartitioned_dataset_builds_unpartitioned_assets(write_config, tmp_path):
    (tmp_path / "x.csv").write_text("customer_id,churned,age\n1,0,30\n")
    config = write_config(
        {"dataset": {"timestamp": None, "columns": None}, "checks": {"ranges": None}},
        source={"kind": "file", "path": "x.csv"},
    )
    graph = build_definitions(config).resolve_asset_graph()
    assert graph.get(dg.AssetKey("raw_data")).partitions_def is None


def test_dagster_validates_the_workspace(tmp_path):
    env = {**os.environ, "NEXUS_CONFIG": str(REPO / "nexus.yaml"), "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
