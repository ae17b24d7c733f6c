"""Many classes, some with a single row: splits and training never crash; classes too rare to learn are reported
with their counts, and pooled as `other` when the config asks."""

from __future__ import annotations

from vega_datasets import local_data

from nexus_cli.runs import materialize
from nexus_core.names import OTHER_CLASS, TRAINING_CHAIN
from nexus_defs.definitions import build_definitions


def _config(tmp_path, write_config, **rare):
    local_data.airports().to_csv(tmp_path / "airports.csv", index=False)  # 3,376 airports in 56 states
    dataset = {
        "name": "airports",
        "target": "state",
        "task": "multiclass_classification",
        "id_column": "iata",
        "timestamp": None,
        "start_date": None,
        "end_date": None,
        "classes": None,
        "columns": {"numeric": ["latitude", "longitude"], "categorical": [], "drop": ["name", "city", "country"]},
        "rare_classes": rare,
    }
    # a forest finds states from coordinates; the boosted family would grow a tree per class and round (issue 32)
    model = {"registered_name": "airports-model", "candidates": ["linear", "random_forest"]}
    changes = {"dataset": dataset, "checks": {"ranges": None}, "model": model}
    return write_config(changes, source={"kind": "file", "path": "airports.csv"})


def test_states_with_a_single_airport_are_reported_with_their_counts(tmp_path, write_config, instance):
    defs = build_definitions(_config(tmp_path, write_config))
    result = materialize(defs, instance, ["raw_data", "features", "training_dataset"])
    assert result.success
    [split] = result.asset_materializations_for_node("training_dataset")
    assert split.metadata["rare_classes"].value == (
        "DC (1), GU (1), AS (3), CQ (4) (kept; set dataset.rare_classes.group to pool them)"
    )


def test_rare_states_pooled_as_other_train_a_champion(tmp_path, write_config, instance):
    defs = build_definitions(_config(tmp_path, write_config, group=True))
    assert materialize(defs, instance, ["raw_data", "features"]).success
    result = materialize(defs, instance, TRAINING_CHAIN)
    assert result.success
    [split] = result.asset_materializations_for_node("training_dataset")
    assert split.metadata["rare_classes"].value == "DC (1), GU (1), AS (3), CQ (4) (trained as 'other')"
    data = defs.load_asset_value("training_dataset", instance=instance)
    labels = {*data.train["state"], *data.validation["state"], *data.holdout["state"]}
    assert OTHER_CLASS in labels and not {"GU", "DC", "AS", "CQ"} & labels and len(labels) == 53
    assert result.output_for_node("champion_model")["version"] is not None, "states from coordinates are learnable"
