"""Candidates are tracked in MLflow, the best is registered as challenger, and the gate moves `champion`."""

import socket

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.base import BaseEstimator, ClassifierMixin

from nexus_assets.training import assets as training_assets
from nexus_assets.training.candidates import check_trainable
from nexus_assets.training.gate import Rule, decide
from nexus_assets.training.metrics import CLASSIFICATION, REGRESSION
from nexus_cli.cli import main as nexus
from nexus_cli.runs import materialize
from nexus_core import registry
from nexus_core.config import CLASSIFICATION_METRICS, REGRESSION_METRICS
from nexus_core.ensemble import ENSEMBLE
from nexus_defs.definitions import build_definitions
from nexus_resources.mlflow import MlflowResource
from nexus_resources.modes import build_resources
from tests.conftest import TRAINING_CHAIN, materialize_window, register_version

NAME = "nexus-churn-test"


def _client(trained):
    return trained.resources["mlflow"].client()


def _register(trained, instance, shuffle_labels: bool) -> str:
    data = trained.defs.load_asset_value("training_dataset", instance=instance)  # a fresh copy to shuffle
    return register_version(trained.mlflow, trained.config, data, shuffle_labels)


def _gate_with_challenger(defs, instance, version: str) -> dict:
    """Run the real gate against a challenger version chosen by the test."""

    @dg.asset(name="challenger_model")
    def chosen_challenger() -> dict:
        return {"name": NAME, "version": version}

    assets = [a for a in defs.assets if getattr(a, "key", None) != dg.AssetKey("challenger_model")]
    result = dg.materialize(
        [*assets, chosen_challenger],
        selection=["challenger_model", "champion_model"],
        resources=defs.resources,
        instance=instance,
    )
    assert result.success
    return defs.load_asset_value("champion_model", instance=instance)


def test_first_model_must_beat_the_baseline_and_is_promoted(trained, instance):
    aliases = registry.aliases(_client(trained), NAME)
    challenger = trained.defs.load_asset_value("challenger_model", instance=instance)
    assert aliases == {"challenger": challenger["version"], "champion": challenger["version"]}
    [decision] = trained.resources["app_db"].decisions(NAME)
    assert decision["decision"] == "promoted" and decision["actor"] == "gate"
    assert decision["details"]["reference"] == "baseline" and decision["champion_score"] == 0.5
    metadata = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization.metadata
    assert "| roc_auc" in metadata["comparison"].value
    run = _client(trained).get_run(challenger["run_id"])
    plot_page = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifactPath/"
    assert metadata["plot"].value == plot_page + "gate/confusion_matrices.png"  # the PNG beside the challenger's run
    assert "gate/confusion_matrices.png" in [a.path for a in _client(trained).list_artifacts(run.info.run_id, "gate")]
    version_page = f"http://127.0.0.1:5000/#/models/{NAME}/versions/{challenger['version']}"
    assert metadata["champion_version"].value == version_page  # a link to the MLflow UI of `make mlflow`
    challenger_links = instance.get_latest_materialization_event(dg.AssetKey("challenger_model"))
    run_page = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert challenger_links.asset_materialization.metadata["mlflow_run"].value == run_page


def test_candidates_are_tracked_with_lineage_and_trusted_types(trained, instance):
    candidates = trained.defs.load_asset_value("candidate_models", instance=instance)
    families = ["linear", "random_forest", "hist_gradient_boosting"]
    assert [c.family for c in candidates] in (families, [*families, ENSEMBLE])
    client = _client(trained)
    data = trained.defs.load_asset_value("training_dataset", instance=instance)
    for candidate in candidates:
        run = client.get_run(candidate.run_id)
        assert run.data.tags["dagster.asset_key"] == "candidate_models"
        assert run.data.tags["dagster.run_id"]
        assert run.data.tags["nexus.data_hash"] == data.manifest["window_hash"]
        assert run.data.tags["dagster.partition_range"] == "2026-01-01...2026-01-06"
        assert run.data.tags["nexus.code_version"]
        # scored on the validation part and on an older window of its length, by the family refitted before it
        assert {"validation_roc_auc", "older_window_1_roc_auc", "holdout_roc_auc"} <= set(run.data.metrics)
        assert run.data.metrics["older_window_1_roc_auc"] == candidate.older[0]["roc_auc"]
        info = mlflow.models.get_model_info(candidate.model_uri)
        assert info.signature is not None and info.saved_input_example_info is not None
        members = [] if candidate.family != ENSEMBLE else run.data.params["members"].split(", ")
        trusted = registry.trusted_types([candidate.family, *(member.rsplit(" ", 1)[0] for member in members)])
        assert info.flavors["sklearn"]["skops_trusted_types"] == trusted
    comparison = instance.get_latest_materialization_event(dg.AssetKey("candidate_models"))
    assert "hist_gradient_boosting" in comparison.asset_materialization.metadata["comparison"].value


class _Unfittable(ClassifierMixin, BaseEstimator):
    """A family that cannot learn from this window, as a family whose solver or data check gives up would."""

    def fit(self, X, y, **fit):
        raise ValueError("the solver found no solution")


def test_a_family_that_fails_to_fit_is_reported_and_the_others_compete(trained, instance, monkeypatch):
    real = training_assets.estimator
    monkeypatch.setattr(
        training_assets,
        "estimator",
        lambda family, task, seed: _Unfittable() if family == "random_forest" else real(family, task, seed),
    )
    assert materialize(trained.defs, instance, ["candidate_models", "challenger_model"]).success
    candidates = trained.defs.load_asset_value("candidate_models", instance=instance)
    assert [c.family for c in candidates] == ["linear", "hist_gradient_boosting"]
    comparison = instance.get_latest_materialization_event(dg.AssetKey("candidate_models"))
    text = comparison.asset_materialization.metadata["comparison"].value
    assert "Left out, failed to fit: random_forest (ValueError: the solver found no solution)" in text
    [run] = mlflow.search_runs(
        experiment_ids=[trained.mlflow.experiment_id("churn")],
        filter_string="tags.`nexus.family` = 'random_forest' and attributes.status = 'FAILED'",
        output_format="list",
    )
    assert run.data.tags["nexus.fit_error"] == "ValueError: the solver found no solution"


def test_training_is_deterministic(trained, instance):
    first = trained.defs.load_asset_value("candidate_models", instance=instance)
    assert materialize(trained.defs, instance, ["candidate_models"]).success
    again = trained.defs.load_asset_value("candidate_models", instance=instance)
    # The same scores to the last digits that summation order can move (a forest averages its trees on threads).
    assert [c.validation for c in again] == [pytest.approx(c.validation, rel=1e-12, abs=1e-15) for c in first]


def test_gate_promotes_a_better_challenger_unless_it_breaks_a_guardrail(trained, instance, write_config):
    good = registry.aliases(_client(trained), NAME)["champion"]
    bad = _register(trained, instance, shuffle_labels=True)
    registry.promote(_client(trained), NAME, bad)  # a weak champion, moved by hand
    strict = write_config({"model": {"gate": {"guardrails": {"recall": 0.0, "brier": 0.05}, "max_predict_ms": 1e-3}}})
    held_back = _gate_with_challenger(build_definitions(strict), instance, good)
    assert not held_back["promoted"]
    assert "but guardrail predict_ms: the challenger's median predict of one record takes" in held_back["reason"]
    assert "over the budget model.gate.max_predict_ms=0.001" in held_back["reason"]
    [audit, *_] = trained.resources["app_db"].decisions(NAME)
    assert [g["guardrail"] for g in audit["details"]["guardrails"]] == ["recall", "brier", "predict_ms"]
    assert [g["held"] for g in audit["details"]["guardrails"]] == [True, True, False]
    metadata = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization.metadata
    assert "Guardrails:" in metadata["comparison"].value and "predict_ms" in metadata["comparison"].value
    assert registry.aliases(_client(trained), NAME)["champion"] == bad

    # With a minimum shadow record the challenger waits for labelled live answers, and is judged again once it has
    shadowing = build_definitions(write_config({"model": {"gate": {"min_shadow_rows": 50}}}))
    waiting = _gate_with_challenger(shadowing, instance, good)
    assert not waiting["promoted"] and "has only 0 labelled shadow predictions" in waiting["reason"]
    assert trained.resources["app_db"].decisions(NAME)[0]["decision"] == "awaiting_shadow"
    _client(trained).set_registered_model_alias(NAME, registry.CHALLENGER, good)
    sensor = shadowing.get_sensor_def("shadow_gate_sensor")
    with dg.build_sensor_context(instance=instance, resources=shadowing.resources) as context:
        assert f"challenger v{good}: 0 of 50 labelled shadow predictions" in sensor(context).skip_reason
    record = pd.DataFrame(
        [
            {
                "source": "live",
                "champion": bad,
                "challenger": good,
                "labelled": 60,
                "agreement": 0.8,
                "champion_score": 0.55,
                "challenger_score": 0.8,
                "gain": 0.25,
            }
        ]
    )
    trained.resources["app_db"].replace_shadow_results(NAME, "2026-01-07", record)
    with dg.build_sensor_context(instance=instance, resources=shadowing.resources) as context:
        [request] = sensor(context).run_requests
    assert request.tags["nexus/model_version"] == good
    assert shadowing.get_job_def("gate").asset_layer.executable_asset_keys == {dg.AssetKey("champion_model")}
    outcome = _gate_with_challenger(shadowing, instance, good)
    assert outcome["promoted"] and outcome["version"] == good
    aliases = registry.aliases(_client(trained), NAME)
    assert (aliases["champion"], aliases["previous_champion"]) == (good, bad)


def test_gate_rejects_a_worse_challenger(trained, instance):
    good = registry.aliases(_client(trained), NAME)["champion"]
    bad = _register(trained, instance, shuffle_labels=True)
    outcome = _gate_with_challenger(trained.defs, instance, bad)
    assert not outcome["promoted"] and "worse than the margin" in outcome["reason"]
    assert registry.aliases(_client(trained), NAME)["champion"] == good
    tags = _client(trained).get_model_version(NAME, bad).tags
    assert tags["nexus.gate.decision"] == "rejected" and "worse" in tags["nexus.gate.reason"]
    assert trained.resources["app_db"].decisions(NAME)[0]["decision"] == "rejected"


def test_gate_rejects_a_tie_within_the_margin(trained, instance):
    client = _client(trained)
    champion = registry.aliases(client, NAME)["champion"]
    served = client.get_model_version(NAME, champion)
    twin = client.create_model_version(NAME, served.source, served.run_id).version  # the same model again
    outcome = _gate_with_challenger(trained.defs, instance, twin)
    assert not outcome["promoted"] and "a tie within the margin" in outcome["reason"]
    assert registry.aliases(_client(trained), NAME)["champion"] == champion


@pytest.mark.parametrize(
    ("setting", "check"),
    [
        ({"objective": "fixed", "value": 0.3}, lambda t, recall, precision: t == 0.3),
        ({"objective": "recall", "min_recall": 0.9}, lambda t, recall, precision: recall >= 0.9),
        ({"objective": "f1"}, lambda t, recall, precision: 0.05 < t < 0.6),
    ],
)
def test_the_decision_threshold_fits_its_objective(setting, check):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_score, recall_score

    from nexus_assets.training.thresholds import choose_threshold
    from nexus_core.config import ThresholdConfig
    from nexus_core.inference import predict

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=4000)})
    y = np.where(X["x"] + rng.normal(size=4000) > 1.6, "churn", "stay")  # a minority positive class, by name
    model = LogisticRegression().fit(X, y)
    assert list(model.classes_) == ["churn", "stay"]  # so the positive (second) class is "stay" here
    config = ThresholdConfig(**setting)
    threshold = choose_threshold(config, model, X, y)
    labels, _ = predict(model, X, threshold)
    recall, precision = (f(y, labels, pos_label="stay") for f in (recall_score, precision_score))
    assert check(threshold, recall, precision), (threshold, recall, precision)


def test_a_cost_matrix_that_fears_missed_positives_lowers_the_threshold():
    from sklearn.linear_model import LogisticRegression

    from nexus_assets.training.thresholds import choose_threshold
    from nexus_core.config import ThresholdConfig

    rng = np.random.default_rng(4)
    X = pd.DataFrame({"x": rng.normal(size=4000)})
    y = (X["x"] + rng.normal(size=4000) > 1.6).astype(int)
    model = LogisticRegression().fit(X, y)
    even = choose_threshold(ThresholdConfig(objective="cost"), model, X, y)
    fearful = choose_threshold(ThresholdConfig(objective="cost", false_negative_cost=10), model, X, y)
    assert fearful < even and abs(even - 0.5) < 0.1  # equal costs: about the likelier class


def test_metric_names_agree_with_the_config():
    assert set(CLASSIFICATION) == set(CLASSIFICATION_METRICS)
    assert set(REGRESSION) == set(REGRESSION_METRICS)


def test_cli_promote_and_rollback_write_audit_rows(trained, instance, capsys):
    first = registry.aliases(_client(trained), NAME)["champion"]
    second = _register(trained, instance, shuffle_labels=False)
    assert nexus(["promote", second, "--reason", "canary looked fine"]) == 0
    assert registry.aliases(_client(trained), NAME)["champion"] == second
    assert nexus(["rollback"]) == 0
    aliases = registry.aliases(_client(trained), NAME)
    assert aliases["champion"] == first and aliases["previous_champion"] == second
    rollback, manual = trained.resources["app_db"].decisions(NAME)[:2]
    assert (manual["decision"], manual["challenger_version"], manual["reason"]) == (
        "manual_promote",
        second,
        "canary looked fine",
    )
    assert manual["actor"].startswith("cli:")
    assert (rollback["decision"], rollback["challenger_version"], rollback["champion_version"]) == (
        "rollback",
        first,
        second,
    )
    assert nexus(["status"]) == 0
    champion_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| champion "))
    assert champion_row.split("|")[2].strip() == first
    assert nexus(["promote", "999"]) == 1


def test_single_class_stops_before_anything_is_registered(tmp_path, write_config, instance):
    from nexus_assets.data.synthetic import generate_day

    config = write_config()
    frames = [generate_day(config.dataset.source, pd.Timestamp(f"2026-01-0{d}").date()) for d in range(1, 7)]
    pd.concat(frames).assign(churned=0).to_csv(tmp_path / "one-class.csv", index=False)
    defs = build_definitions(write_config(source={"kind": "file", "path": "one-class.csv"}))
    materialize_window(defs, instance)
    result = materialize(defs, instance, TRAINING_CHAIN)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "holds a single class (0)" in failure.step_failure_data.user_failure_data.description
    resources = build_resources()
    resources["mlflow"].activate()
    assert registry.aliases(resources["mlflow"].client(), NAME) == {}


def test_too_few_rows_or_missing_target_stop_training(write_config, instance):
    config = write_config({"training": {"min_rows": 5000}})
    defs = build_definitions(config)
    materialize_window(defs, instance)
    data = (
        defs.load_asset_value("training_dataset", instance=instance)
        if materialize(defs, instance, ["training_dataset"]).success
        else None
    )
    with pytest.raises(ValueError, match=r"fewer than training\.min_rows=5000"):
        check_trainable(config, data)
    data.train = data.train.assign(churned=np.nan)
    with pytest.raises(ValueError, match="missing in every training row"):
        check_trainable(config, data)


def test_unreachable_mlflow_fails_clearly_and_a_retry_registers_once(write_config, instance, embedded_home):
    defs = build_definitions(write_config())
    materialize_window(defs, instance)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound and never listening: every connection to it is refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        down = MlflowResource(tracking_uri=url, max_retries=1, backoff_factor=0, request_timeout=2)
        result = dg.materialize(
            list(defs.assets),
            selection=TRAINING_CHAIN,
            instance=instance,
            resources={**defs.resources, "mlflow": down},
            raise_on_error=False,
        )
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "candidate_models"
    message = failure.step_failure_data.user_failure_data.description
    assert "failed to open experiment" in message and "Check that the tracking server is up" in message
    assert materialize(defs, instance, TRAINING_CHAIN).success
    assert materialize(defs, instance, ["challenger_model", "champion_model"]).success  # a retried tail
    resources = build_resources()
    resources["mlflow"].activate()
    assert len(resources["mlflow"].client().search_model_versions(f"name = '{NAME}'")) == 1


def test_the_bootstraps_metrics_equal_sklearns():
    rng = np.random.default_rng(3)
    y = rng.choice(["no", "yes"], 500)
    scores = rng.integers(0, 20, 500) / 20  # ties
    assert CLASSIFICATION["roc_auc"].fn(y, scores) == pytest.approx(metrics.roc_auc_score(y, scores), abs=1e-12)
    y3, proba = rng.integers(0, 3, 500), rng.dirichlet(np.ones(3), 500)
    expected = metrics.roc_auc_score(y3, proba, multi_class="ovr", average="macro")
    assert CLASSIFICATION["roc_auc"].fn(y3, proba, [0, 1, 2]) == pytest.approx(expected, abs=1e-12)
    predicted = rng.choice(["no", "yes"], 500)
    assert CLASSIFICATION["accuracy"].fn(y, predicted) == metrics.accuracy_score(y, predicted)
    truth, guess = rng.normal(size=500), rng.normal(size=500)
    assert REGRESSION["rmse"].fn(truth, guess) == pytest.approx(np.sqrt(metrics.mean_squared_error(truth, guess)))
    assert REGRESSION["mae"].fn(truth, guess) == pytest.approx(metrics.mean_absolute_error(truth, guess))


def test_multiclass_auc_scores_the_classes_a_split_holds():
    y = np.array(["rain", "rain", "sun", "sun"])  # "snow" is a known class this split lacks
    scores = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    assert CLASSIFICATION["roc_auc"].fn(y, scores, ["rain", "snow", "sun"]) == 1.0
    assert np.isnan(CLASSIFICATION["roc_auc"].fn(np.array(["sun", "sun"]), scores[:2], ["rain", "snow", "sun"]))


def test_regression_margins_are_relative_to_the_reference_by_default(write_config):
    config = write_config({"dataset": {"task": "regression", "classes": None}, "model": {"selection_metric": "rmse"}})
    assert config.gate_margin == (0.01, True)
    rule = Rule(*config.gate_margin, slice_tolerance=0.02, max_holdout_drop=0.25, instability="warn")
    # a price error of 100 dollars: a 0.5-dollar gain is a tie, a 5-dollar gain with confidence is not
    rmse = REGRESSION["rmse"]
    assert "a tie within the margin 1 (1.00% of the reference's score)" in (
        decide(rmse, rule, 99.5, 100.0, "champion v1", pd.DataFrame(), (0.2, 0.8)).reason
    )
    assert decide(rmse, rule, 95.0, 100.0, "champion v1", pd.DataFrame(), (3.0, 7.0)).promoted


def test_the_rescaled_bootstrap_agrees_with_the_full_one():
    from nexus_assets.training.metrics import paired_gain_interval

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 8_000)
    outputs = []
    for signal in (0.30, 0.25):
        score = np.clip(y * signal + rng.random(len(y)) * (1 - signal), 0, 1)
        outputs.append(((score > 0.5).astype(int), np.c_[1 - score, score], np.array([0, 1])))
    metric = CLASSIFICATION["roc_auc"]
    full = paired_gain_interval(metric, y, tuple(outputs), 0.95, draws=300)
    rescaled = paired_gain_interval(metric, y, tuple(outputs), 0.95, draws=300, max_rows=2_000)
    assert full[0] > 0 and rescaled[0] > 0
    assert abs(full[0] - rescaled[0]) < 0.01 and abs(full[1] - rescaled[1]) < 0.01


def test_the_cli_creates_no_registry_where_there_is_none(write_config, embedded_home, monkeypatch, capsys):
    monkeypatch.setenv("NEXUS_CONFIG", str(write_config().path))
    for command in (["status"], ["promote", "1"], ["rollback"], ["trace", "--version", "1"]):
        assert nexus(command) == 1, command
        assert "is missing: nothing is trained yet (run `make demo`)" in capsys.readouterr().err
    assert not (embedded_home / "mlflow" / "mlflow.db").exists()
