"""Shadow predictions: the challenger's answers to live requests, stored beside the champion's answers.

The service writes them (it may import only the core); `shadow_comparison` reads them back joined with the labels.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from nexus_core.schema import shadow_predictions


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
        shadow_predictions.create(engine, checkfirst=True)
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
