"""History is ingested as a range of partitions in one run (a backfill with `BackfillPolicy.single_run()`), and
each partition keeps its own values, metadata and check results, as if it had run alone."""

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd

from nexus_assets.data.synthetic import generate_day
from nexus_cli.replay import MONITORING
from nexus_cli.runs import ingest, materialize, range_tags
from nexus_core.config import REPO_ROOT
from nexus_core.names import RANGE_END, RANGE_START
from nexus_defs.definitions import build_definitions
from tests.conftest import merge

DAYS = [f"2026-01-0{d}" for d in range(1, 6)]


def _records(instance, run_id, event_type):
    return instance.get_records_for_run(run_id, of_type=event_type).records


def test_a_range_is_one_run_whose_partitions_have_their_own_values_metadata_and_checks(write_config, instance):
    config = write_config()
    defs = build_definitions(config)

    ingested = ingest(defs, instance, DAYS)

    assert not ingested.blocked and len(ingested.runs) == 1
    [run_id] = ingested.runs
    assert instance.get_run_by_id(run_id).tags[RANGE_START] == DAYS[0]
    materialized = _records(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION)
    stored = {
        (r.event_log_entry.dagster_event.asset_key.to_user_string(), r.event_log_entry.dagster_event.partition): r
        for r in materialized
    }
    assert set(stored) == {(asset, day) for asset in ("raw_data", "features") for day in DAYS}
    for day in DAYS:  # each day's own rows, counted on its own materialization
        rows = generate_day(config.dataset.source, dt.date.fromisoformat(day))
        value = defs.load_asset_value("raw_data", partition_key=day, instance=instance)
        pd.testing.assert_frame_equal(value, rows)
        metadata = stored[("raw_data", day)].asset_materialization.metadata
        assert metadata["dagster/row_count"].value == len(rows)
        assert str(rows["customer_id"].iloc[0]) in metadata["preview"].value
    checked = _records(instance, run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in checked]
    assert {(e.check_name, e.partition) for e in evaluations} == {
        (name, day) for name in _check_names(defs) for day in DAYS
    }
    for evaluation in evaluations:  # each judges its own day's materialization, the latest
        latest = _latest(instance, "raw_data", evaluation.partition)
        assert evaluation.target_materialization_data.storage_id == latest.storage_id
        assert latest.run_id == run_id
        assert evaluation.passed, evaluation.description
    # the same day materialized alone gives the same features
    ranged = defs.load_asset_value("features", partition_key=DAYS[2], instance=instance)
    assert materialize(defs, instance, ["raw_data", "features"], DAYS[2]).success
    alone = defs.load_asset_value("features", partition_key=DAYS[2], instance=instance)
    pd.testing.assert_frame_equal(ranged, alone)


def test_a_bad_day_in_a_range_blocks_itself_alone_named_and_kept(tmp_path, write_config, instance, embedded_home):
    source = write_config(name="synthetic.yaml").dataset.source
    frames = [generate_day(source, dt.date.fromisoformat(day)) for day in DAYS]
    bad = frames[2].astype({"age": object})
    bad.loc[17, "age"] = "forty"
    frames[2] = bad
    pd.concat(frames, ignore_index=True).to_csv(tmp_path / "events.csv", index=False)
    changes = {"dataset": {"columns": None, "partitions": "daily", "end_date": "2026-01-06"}}
    defs = build_definitions(
        write_config(merge({}, changes), source={"kind": "file", "path": "events.csv"}),
    )

    ingested = ingest(defs, instance, DAYS)

    assert ingested.blocked == [DAYS[2]]
    checked = _records(instance, ingested.runs[0], dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = [r.event_log_entry.dagster_event.event_specific_data for r in checked]
    failed = [e for e in failed if not e.passed]
    assert [(e.check_name, e.partition) for e in failed] == [("schema", DAYS[2])]
    assert "row 17 (events.csv line 619): 'forty'" in failed[0].description  # after the header and two days of 300
    assert instance.get_materialized_partitions(dg.AssetKey("features")) == set(DAYS) - {DAYS[2]}
    assert (Path(embedded_home) / "storage" / "raw_data" / DAYS[2]).exists(), "the blocked day's rows are kept"


def test_history_is_monitored_as_a_range_judging_each_partition_as_if_alone(trained, instance):
    defs, days = trained.defs, [f"2026-01-{day:02d}" for day in range(7, 11)]
    assert not ingest(defs, instance, days).blocked

    result = materialize(defs, instance, MONITORING, tags=range_tags(days))

    assert result.success
    loads = [e for e in result.all_events if e.event_type == dg.DagsterEventType.LOADED_INPUT]
    assert not [e for e in loads if e.step_key == "batch_predictions"], "each day's task reads its own features"
    app_db, name = trained.resources["app_db"], trained.config.model.registered_name
    for day in days:
        features = defs.load_asset_value("features", partition_key=day, instance=instance)
        scored = defs.load_asset_value("batch_predictions", partition_key=day, instance=instance)
        assert len(scored) == len(features) == len(app_db.predictions_for(name, day))
        pending = _latest(instance, "ground_truth", day).asset_materialization.metadata["pending_labels"]
        labels = defs.load_asset_value("ground_truth", partition_key=day, instance=instance)
        assert pending.value == len(features) - len(labels)
    checks = {(e.check_name, e.partition): e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {(check, day) for check in ("drift_share", "no_degradation") for day in days}
    health = app_db.health(name).set_index("partition")
    for day in days:
        drifted = _latest(instance, "drift_report", day).asset_materialization.metadata["drifted_percent"].value
        assert drifted == checks[("drift_share", day)].metadata["drifted_percent"].value
        assert drifted == round(100 * health.loc[day, "drift_share"], 1)
    # each day is judged; the report with its plots is rendered for the newest
    reports = {day: _latest(instance, "drift_report", day).asset_materialization.metadata for day in days}
    assert [day for day in days if "report" in reports[day]] == [days[-1]]
    # a day monitored alone is scored and judged the same
    ranged = defs.load_asset_value("batch_predictions", partition_key=days[1], instance=instance)
    alone = materialize(defs, instance, MONITORING, days[1])
    assert alone.success
    again = defs.load_asset_value("batch_predictions", partition_key=days[1], instance=instance)
    pd.testing.assert_frame_equal(ranged, again)
    for evaluation in alone.get_asset_check_evaluations():
        first = checks[(evaluation.check_name, days[1])]
        assert (evaluation.passed, evaluation.description) == (first.passed, first.description)


def test_a_backfill_from_dagsters_own_cli_is_one_run_on_the_embedded_instance(write_config, tmp_path, monkeypatch):
    """What a user runs for history: Dagster's CLI over the code location, on the instance `make dev` uses."""
    config = write_config()
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "nexus_defs.definitions"]
    command += ["--select", "raw_data,features", "--partition-range", f"{DAYS[0]}...{DAYS[2]}"]
    env = {**os.environ, "DAGSTER_HOME": str(home), "NEXUS_CONFIG": str(config.path)}
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml names its folder by it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert (run.tags[RANGE_START], run.tags[RANGE_END]) == (DAYS[0], DAYS[2])
        assert instance.get_materialized_partitions(dg.AssetKey("features")) == set(DAYS[:3])
        schema = dg.AssetCheckKey(dg.AssetKey("raw_data"), "schema")
        history = instance.event_log_storage.get_asset_check_execution_history(schema, limit=10)
        assert sorted(record.partition for record in history) == DAYS[:3]


def _latest(instance, asset: str, partition: str) -> dg.EventLogRecord:
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records[0]


def _check_names(defs) -> set[str]:
    return {key.name for key in defs.resolve_assets_def("raw_data").check_keys}
