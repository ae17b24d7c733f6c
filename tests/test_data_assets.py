"""raw_data, features and training_dataset materialize for daily partitions with useful metadata."""

import datetime as dt

import dagster as dg
import pandas as pd

from nexus_assets.data import contract
from nexus_assets.data.synthetic import generate_day
from nexus_assets.features.split import History, TrainingDataset, split_by_partition
from nexus_cli.runs import materialize
from nexus_core.config import SyntheticSource
from nexus_core.features import FeatureSpec, build_preprocessor, model_inputs
from nexus_defs.definitions import build_definitions

DAYS = [f"2026-01-0{d}" for d in range(1, 8)]


def _materialize_days(defs, instance, days):
    for day in days:
        result = materialize(defs, instance, ["raw_data", "features"], day)
        assert result.success, day


def _metadata(instance, key):
    return instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata


def test_data_assets_materialize_per_partition_with_metadata_owners_and_column_descriptions(write_config, instance):
    described = {"owners": ["team:retention", "ana@example.com"], "descriptions": {"age": "customer age in years"}}
    defs = build_definitions(write_config({"dataset": described}))
    _materialize_days(defs, instance, DAYS[:3])
    assert instance.get_materialized_partitions(dg.AssetKey("features")) == set(DAYS[:3])
    raw = _metadata(instance, "raw_data")
    assert raw["dagster/row_count"].value == 300
    assert "customer_id" in raw["preview"].value
    columns = {c.name: c for c in raw["dagster/column_schema"].value.columns}
    assert set(columns) >= {"age", "plan", "churned"}
    assert (
        columns["age"].description
        == "customer age in years (numeric: declared in dataset.columns.numeric; read as float64)"
    )
    graph = defs.get_repository_def().asset_graph
    for asset in ("raw_data", "features"):
        assert graph.get(dg.AssetKey(asset)).owners == ["team:retention", "ana@example.com"]
    features = defs.load_asset_value("features", partition_key=DAYS[0], instance=instance)
    assert features["age"].dtype == "float64" and features["plan"].dtype == object
    assert list(features.columns[:2]) == ["customer_id", "event_time"] and features.columns[-1] == "churned"
    schema = {c.name: c.description for c in _metadata(instance, "features")["dagster/column_schema"].value.columns}
    assert schema[
        "age"
    ] == "customer age in years (numeric: declared in dataset.columns.numeric; read as float64)" and schema[
        "plan"
    ].startswith("categ")
    assert all(schema.values()), "every feature column says what it is"
    stored = _metadata(instance, "features")["stored"].value
    pd.testing.assert_frame_equal(
        pd.read_parquet(stored), defs.load_asset_value("features", partition_key=DAYS[2], instance=instance)
    )


def test_training_dataset_splits_the_latest_window_by_time(write_config, instance):
    defs = build_definitions(write_config({"training": {"window_partitions": 6}}))
    _materialize_days(defs, instance, DAYS)
    assert materialize(defs, instance, ["training_dataset"]).success
    data: TrainingDataset = defs.load_asset_value("training_dataset", instance=instance)
    # 7 days materialized, a 6-day window: day 1 is out; 1 holdout day, 1 validation day, 4 training days.
    assert data.manifest["train"]["partitions"] == ["2026-01-02", "2026-01-05"]
    assert data.manifest["validation"]["partitions"] == ["2026-01-06", "2026-01-06"]
    assert data.manifest["holdout"]["partitions"] == ["2026-01-07", "2026-01-07"]
    assert data.train["event_time"].max() < data.validation["event_time"].min()
    assert data.validation["event_time"].max() < data.holdout["event_time"].min()
    assert len(data.holdout) == 300 and len(data.train) == 1200
    assert _metadata(instance, "training_dataset")["holdout_hash"].value == data.manifest["holdout"]["content_hash"]


def test_a_long_history_is_read_a_window_and_a_sample_of_older_partitions_at_a_time(write_config):
    days = [str(day.date()) for day in pd.date_range("2000-01-01", periods=3000)]
    read: list[str] = []

    def day(key: str) -> pd.DataFrame:
        read.append(key)
        return pd.DataFrame({"age": [float(days.index(key))] * 50, "churned": [0, 1] * 25})

    config = write_config({"training": {"window_partitions": None, "max_rows": 1000}})
    spec = FeatureSpec(numeric=("age",), categorical=())
    data = split_by_partition(History(dict.fromkeys(days, 50), day), config, spec)
    window = days[-20:]  # the newest 1,000 rows
    assert (
        data.manifest["train"]["partitions"][0] == window[0] and data.manifest["holdout"]["partitions"][1] == days[-1]
    )
    assert len(data.older) == 2000 and data.older["age"].nunique() == 200, "older rows from 200 days, every season"
    assert set(read) == set(window) | set(data.older["age"].astype(int).map(days.__getitem__))
    assert len(read) <= 220, "each window partition read once, and 200 older ones, not 3,000"


def test_holdout_hash_is_reproducible(write_config, instance):
    defs = build_definitions(write_config())
    _materialize_days(defs, instance, DAYS[:4])
    assert materialize(defs, instance, ["training_dataset"]).success
    first = defs.load_asset_value("training_dataset", instance=instance).manifest
    _materialize_days(defs, instance, DAYS[:4])
    assert materialize(defs, instance, ["training_dataset"]).success
    again = defs.load_asset_value("training_dataset", instance=instance).manifest
    assert first["holdout"]["content_hash"] == again["holdout"]["content_hash"]
    assert first == again


def test_missing_categories_stored_as_parquet_are_imputed(tmp_path, write_config, instance):
    frame = generate_day(SyntheticSource(kind="synthetic", rows_per_day=200), dt.date(2026, 1, 1))
    frame.loc[::10, "plan"] = None
    frame.to_csv(tmp_path / "table.csv", index=False)
    config = write_config(
        {"dataset": {"timestamp": None, "start_date": None}}, source={"kind": "file", "path": "table.csv"}
    )
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features"]).success
    features = defs.load_asset_value("features", instance=instance)
    spec = contract.feature_spec_of(contract.propose(config, features, None))
    encoded = (
        build_preprocessor(spec, dense=True).set_output(transform="pandas").fit_transform(model_inputs(features, spec))
    )
    assert encoded["plan_missing"].sum() == 20


def test_unpartitioned_source_splits_rows_with_a_seed(tmp_path, write_config, instance):
    frame = generate_day(SyntheticSource(kind="synthetic", rows_per_day=500), dt.date(2026, 1, 1))
    frame.drop(columns="event_time").to_csv(tmp_path / "table.csv", index=False)
    config = write_config(
        {"dataset": {"timestamp": None, "start_date": None}}, source={"kind": "file", "path": "table.csv"}
    )
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features", "training_dataset"]).success
    data = defs.load_asset_value("training_dataset", instance=instance)
    assert len(data.train) + len(data.validation) + len(data.holdout) == 500
    assert len(data.holdout) == 75
    assert pd.concat([data.train, data.validation, data.holdout])["customer_id"].is_unique
