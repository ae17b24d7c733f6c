"""Shadow predictions: the challenger's answers to live requests, stored beside the champion's answers.

The service writes them (it may import only the core); `shadow_comparison` reads them back joined with the labels.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

metadata = sa.MetaData()

shadow_predictions = sa.Table(
    "shadow_predictions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("record_id", sa.String(128)),  # the dataset's id column, when the request carried it
    sa.Column("source", sa.String(16), nullable=False),  # live (the service) | batch (batch_predictions)
    sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("champion_version", sa.String(32), nullable=False),
    sa.Column("champion_prediction", sa.String(128), nullable=False),
    sa.Column("champion_probability", sa.Float),  # as batch scoring stores it: the positive class's, or the top one
    sa.Column("challenger_version", sa.String(32), nullable=False),
    sa.Column("challenger_prediction", sa.String(128), nullable=False),
    sa.Column("challenger_probability", sa.Float),
    sa.Index("shadow_predictions_record", "registered_model", "record_id"),
)


def probability(answer: dict[str, Any], classes: list | None) -> float | None:
    """The number batch scoring stores for an answer: the positive class's probability for a binary model, the
    predicted class's for several classes, none for regression."""
    probabilities = answer.get("probabilities")
    if not probabilities:
        return None
    if classes is not None and len(classes) == 2:
        return probabilities[str(classes[1])]
    return max(probabilities.values())


def create_table(engine: sa.Engine) -> None:
    """The table, if no other process (the app database, another worker) created it first."""
    try:
        metadata.create_all(engine)
    except sa.exc.DatabaseError:  # created by another process between the check and the CREATE
        if not sa.inspect(engine).has_table(shadow_predictions.name):
            raise


def write(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(shadow_predictions.insert(), rows)


def read(engine: sa.Engine, registered_model: str, record_ids: list[str]) -> pd.DataFrame:
    """The shadow predictions of these records (newest answer per record and challenger)."""
    table = shadow_predictions
    frames = []
    with engine.connect() as connection:
        for start in range(0, len(record_ids), 10_000):  # bounded IN lists
            query = sa.select(table).where(
                (table.c.registered_model == registered_model)
                & table.c.record_id.in_(record_ids[start : start + 10_000])
            )
            frames.append(pd.read_sql_query(query, connection))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[c.name for c in table.c])
    return rows.sort_values("id").drop_duplicates(["record_id", "source", "challenger_version"], keep="last")
