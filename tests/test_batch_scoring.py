"""Batch predictions are written while the next chunk is scored, in one transaction: a failure part-way through
keeps the rows an earlier run stored, and the fast bulk path stores exactly what SQLAlchemy would read back."""

import datetime as dt

import pandas as pd
import pytest

from nexus_assets.lib.background import Background
from nexus_resources.app_db import AppDatabase

DAY = "2026-01-07"


def _chunk(start: int, rows: int, version: str = "1") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prediction": ["1" if i % 3 == 0 else "0" for i in range(start, start + rows)],
            "probability": [float("nan") if i == 0 else i / (start + rows) for i in range(start, start + rows)],
            "id": [f"c-{i}" for i in range(start, start + rows)],
            "model_version": version,
        }
    )


@pytest.fixture
def app_db(tmp_path) -> AppDatabase:
    return AppDatabase(url=f"sqlite:///{tmp_path / 'app.db'}")


def test_chunks_written_in_the_background_are_stored_once(app_db):
    with Background(lambda chunks: app_db.replace_predictions("m", DAY, chunks)) as store:
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
    app_db.replace_predictions("m", DAY, [chunk.assign(model_version="1")])
    stored = app_db.predictions_for("m", DAY)
    assert list(stored["id"]) == ["100", "12", "3"], "text order, the order of the primary key"
    assert list(stored["prediction"]) == ["1", "1", "0"]
    assert stored["probability"].tolist() == pytest.approx([1e-9, 0.9, 0.1], abs=1e-15)


def test_a_failure_while_scoring_keeps_the_rows_stored_before(app_db):
    app_db.replace_predictions("m", DAY, [_chunk(0, 50, version="1")])
    writer = Background(lambda chunks: app_db.replace_predictions("m", DAY, chunks))
    with pytest.raises(ValueError, match="model failed on chunk 2"), writer as store:
        store.put(_chunk(0, 40, version="2"))
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
