"""Batch predictions are written while the next chunk is scored, in one transaction: a failure part-way through
keeps the rows an earlier run stored, and the fast bulk path stores exactly what SQLAlchemy would read back."""

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from nexus_assets.lib.background import Background
from nexus_resources.app_db import AppDatabase

DAY = "2026-01-07"


def _chunk(start: int, rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prediction": ["1" if i % 3 == 0 else "0" for i in range(start, start + rows)],
            "probability": [float("nan") if i == 0 else i / (start + rows) for i in range(start, start + rows)],
            "id": [f"c-{i}" for i in range(start, start + rows)],
        }
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def app_db(request, tmp_path) -> AppDatabase:
    """Each database's own bulk path: multi-row VALUES on SQLite, COPY on PostgreSQL."""
    if request.param == "sqlite":
        return AppDatabase(url=f"sqlite:///{tmp_path / 'app.db'}")
    return AppDatabase(url=request.getfixturevalue("postgres_database")("app"))


def test_chunks_written_in_the_background_are_stored_once(app_db):
    with Background(lambda chunks: app_db.replace_predictions("m", DAY, "1", chunks)) as store:
        for start in range(0, 1000, 300):
            store.put(_chunk(start, min(300, 1000 - start)))
    assert store.result == 1000
    stored = app_db.predictions_for("m", DAY).sort_values("id", key=lambda s: s.str[2:].astype(int))
    assert list(stored["id"]) == [f"c-{i}" for i in range(1000)]
    assert stored["probability"].isna().sum() == 1 and stored["probability"].iloc[-1] == pytest.approx(0.999)
    assert (stored["scored_at"].dt.tz_localize(None) - dt.datetime.now(dt.UTC).replace(tzinfo=None)).abs().max() < (
        pd.Timedelta(minutes=5)
    ), "timestamps must read back as datetimes"


def test_ids_and_labels_of_any_type_are_stored_as_text_in_key_order(app_db):
    chunk = pd.DataFrame({"prediction": [1, 0, 1], "probability": [0.9, 0.1, 1e-9], "id": [12, 3, 100]})
    app_db.replace_predictions("m", DAY, "1", [chunk])
    stored = app_db.predictions_for("m", DAY)
    assert list(stored["id"]) == ["100", "12", "3"], "text order, the order of the primary key"
    assert list(stored["prediction"]) == ["1", "1", "0"]
    assert stored["probability"].tolist() == pytest.approx([1e-9, 0.9, 0.1], abs=1e-15)


def test_ids_already_in_order_are_stored_and_found_across_chunks(app_db):
    # each chunk arrives in order; across them the digits change, so '100' sorts before '98'
    chunks = [
        pd.DataFrame({"prediction": "1", "probability": 0.5, "id": range(start, start + 3)}) for start in (97, 100)
    ]
    app_db.replace_predictions("m", DAY, "1", chunks)
    stored = app_db.predictions_for("m", DAY)
    assert list(stored["id"]) == ["100", "101", "102", "97", "98", "99"]
    assert app_db.prediction("m", "98")["partition"] == DAY


def test_a_failure_while_scoring_keeps_the_rows_stored_before(app_db):
    app_db.replace_predictions("m", DAY, "1", [_chunk(0, 50)])
    writer = Background(lambda chunks: app_db.replace_predictions("m", DAY, "2", chunks))
    with pytest.raises(ValueError, match="model failed on chunk 2"), writer as store:
        store.put(_chunk(0, 40))
        raise ValueError("model failed on chunk 2")
    stored = app_db.predictions_for("m", DAY)
    assert len(stored) == 50 and set(stored["model_version"]) == {"1"}


def test_a_failing_writer_stops_the_producer_with_its_error(app_db):
    def consume(chunks):
        for chunk in chunks:
            raise OSError(f"disk full after {len(chunk)} rows")

    with pytest.raises(OSError, match="disk full after 10 rows"), Background(consume, depth=1) as store:
        for _ in range(10):
            store.put(_chunk(0, 10))


def test_rematerializing_a_partition_replaces_its_batch_and_the_view_shows_wide_rows(app_db):
    app_db.replace_predictions("m", DAY, "1", [_chunk(0, 30)])
    app_db.replace_predictions("m", "2026-01-08", "1", [_chunk(0, 5)])
    app_db.replace_predictions("m", DAY, "2", [_chunk(0, 20)])
    with app_db.engine().connect() as connection:
        rows = pd.read_sql_query(sa.text("SELECT * FROM predictions ORDER BY partition, id"), connection)
        batches = connection.execute(sa.text("SELECT count(*) FROM scoring_batches")).scalar_one()
    assert list(rows.columns) == [
        "id",
        "partition",
        "registered_model",
        "model_version",
        "prediction",
        "probability",
        "scored_at",
    ]
    assert rows.groupby(["partition", "model_version"]).size().to_dict() == {(DAY, "2"): 20, ("2026-01-08", "1"): 5}
    assert batches == 2


def test_an_app_database_with_the_old_wide_table_is_moved_to_batches(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with sa.create_engine(url).begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE predictions (id VARCHAR(128) NOT NULL, partition VARCHAR(32) NOT NULL, "
                "registered_model VARCHAR(256) NOT NULL, model_version VARCHAR(32) NOT NULL, "
                "prediction VARCHAR(128) NOT NULL, probability FLOAT, scored_at DATETIME NOT NULL, "
                "PRIMARY KEY (registered_model, partition, id)) WITHOUT ROWID"
            )
        )
        connection.execute(
            sa.text("INSERT INTO predictions VALUES (:id, :partition, 'm', :version, '1', 0.5, '2026-01-09 10:00:00')"),
            [
                {"id": "a", "partition": DAY, "version": "3"},
                {"id": "b", "partition": DAY, "version": "3"},
                {"id": "a", "partition": "2026-01-08", "version": "2"},
            ],
        )
    app_db = AppDatabase(url=url)
    stored = app_db.predictions_for("m", DAY)
    assert sorted(stored["id"]) == ["a", "b"] and set(stored["model_version"]) == {"3"}
    assert app_db.prediction("m", "a")["model_version"] in {"2", "3"}
    assert set(app_db.predictions_for("m", "2026-01-08")["model_version"]) == {"2"}
    inspector = sa.inspect(app_db.engine())
    assert "predictions" in inspector.get_view_names() and "predictions" not in inspector.get_table_names()
