"""The platform's own tables (the promotion audit log, batch predictions) in SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa

metadata = sa.MetaData()

gate_decisions = sa.Table(
    "gate_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),  # promoted | rejected | manual_promote | rollback
    sa.Column("actor", sa.String(64), nullable=False),  # gate | cli:<user>
    sa.Column("challenger_version", sa.String(32)),
    sa.Column("champion_version", sa.String(32)),
    sa.Column("metric", sa.String(64)),
    sa.Column("challenger_score", sa.Float),
    sa.Column("champion_score", sa.Float),
    sa.Column("margin", sa.Float),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("dagster_run_id", sa.String(64)),
    sa.Column("details", sa.JSON),
)


predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(128), nullable=False),
    sa.Column("partition", sa.String(32), nullable=False),
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("prediction", sa.String(128), nullable=False),
    sa.Column("probability", sa.Float),  # of the positive class (binary), of the predicted class (multiclass)
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("registered_model", "partition", "id"),
)


class AppDatabase(dg.ConfigurableResource):
    """A SQLAlchemy URL; the tables are created on first use."""

    url: str

    def engine(self) -> sa.Engine:
        return _engine(self.url)

    def record_decision(self, **row: Any) -> None:
        """Append one promotion decision to the audit log."""
        with self.engine().begin() as connection:
            connection.execute(gate_decisions.insert().values(decided_at=dt.datetime.now(dt.UTC), **row))

    def replace_predictions(
        self, registered_model: str, partition: str, rows: pd.DataFrame, chunk: int = 50_000
    ) -> None:
        """Store one partition's predictions, replacing what an earlier run stored for it (one transaction)."""
        scored_at = dt.datetime.now(dt.UTC)
        with self.engine().begin() as connection:
            connection.execute(
                predictions.delete().where(
                    (predictions.c.registered_model == registered_model) & (predictions.c.partition == partition)
                )
            )
            for start in range(0, len(rows), chunk):
                part = rows.iloc[start : start + chunk]
                records = part.assign(registered_model=registered_model, partition=partition, scored_at=scored_at)
                connection.execute(predictions.insert(), records.to_dict("records"))

    def prediction(self, registered_model: str, prediction_id: str) -> dict[str, Any] | None:
        """The newest stored prediction for an id."""
        query = (
            sa.select(predictions)
            .where((predictions.c.registered_model == registered_model) & (predictions.c.id == prediction_id))
            .order_by(predictions.c.scored_at.desc())
            .limit(1)
        )
        with self.engine().connect() as connection:
            row = connection.execute(query).first()
        return dict(row._mapping) if row else None

    def predictions_for(self, registered_model: str, partition: str) -> pd.DataFrame:
        query = sa.select(predictions).where(
            (predictions.c.registered_model == registered_model) & (predictions.c.partition == partition)
        )
        with self.engine().connect() as connection:
            return pd.read_sql_query(query, connection)

    def decisions(self, registered_model: str, limit: int = 20) -> list[dict[str, Any]]:
        """The newest decisions first."""
        query = (
            sa.select(gate_decisions)
            .where(gate_decisions.c.registered_model == registered_model)
            .order_by(gate_decisions.c.id.desc())
            .limit(limit)
        )
        with self.engine().connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


@cache
def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine
