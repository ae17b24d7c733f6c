"""The platform's own tables (their schema in `nexus_core/schema.py`) read and written, in SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import sqlite3
from collections.abc import Iterable
from functools import cache
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from nexus_core.schema import (
    PREDICTIONS_VIEW,
    data_contracts,
    gate_decisions,
    metadata,
    partition_health,
    predictions,
    retraining_decisions,
    scored_rows,
    scoring_batches,
    shadow_results,
)

HEALTH_FIELDS = ("drift_share", "drifted", "metric", "metric_value", "degraded", "labelled_rows")
WHOLE_TABLE = "all"  # the partition an unpartitioned dataset's rows are stored under


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
        self, registered_model: str, partition: str | None, model_version: str, chunks: Iterable[pd.DataFrame]
    ) -> int:
        """Store one partition's predictions by `model_version` (frames of id, prediction, probability), replacing
        what an earlier run stored for it, in one transaction; `chunks` is consumed as it comes. Returns the rows."""
        partition = _partition(partition)
        key = (scoring_batches.c.registered_model == registered_model) & (scoring_batches.c.partition == partition)
        stored = 0
        with self.engine().begin() as connection:
            earlier = sa.select(scoring_batches.c.id).where(key).scalar_subquery()
            connection.execute(scored_rows.delete().where(scored_rows.c.batch_id == earlier))
            connection.execute(scoring_batches.delete().where(key))
            batch = connection.execute(
                scoring_batches.insert().values(
                    registered_model=registered_model,
                    partition=partition,
                    model_version=model_version,
                    scored_at=dt.datetime.now(dt.UTC),
                )
            ).inserted_primary_key[0]
            for chunk in chunks:
                _bulk_insert(connection, scored_rows, chunk, {"batch_id": batch}, order_by="id")
                stored += len(chunk)
        return stored

    def contract(self, dataset: str) -> dict[str, Any] | None:
        """The newest data contract of `dataset` (version, columns, fixed_by, fixed_at), or None before the first."""
        with self.engine().connect() as connection:
            row = connection.execute(_newest_contract(dataset)).first()
        return dict(row._mapping) if row else None

    def record_contract(self, dataset: str, columns: dict[str, dict[str, str]], fixed_by: str | None) -> int:
        """Store `columns` as the next version of the contract unless it is the newest already; returns its version.
        Two partitions that load at once may both try: the second finds the first's version."""
        try:
            return self._record_contract(dataset, columns, fixed_by)
        except sa.exc.IntegrityError:
            return self._record_contract(dataset, columns, fixed_by)

    def _record_contract(self, dataset: str, columns: dict[str, dict[str, str]], fixed_by: str | None) -> int:
        with self.engine().begin() as connection:
            newest = connection.execute(_newest_contract(dataset)).first()
            if newest is not None and newest.columns == columns:
                return newest.version
            version = (newest.version if newest else 0) + 1
            connection.execute(
                data_contracts.insert().values(
                    dataset=dataset,
                    version=version,
                    columns=columns,
                    fixed_by=fixed_by,
                    fixed_at=dt.datetime.now(dt.UTC),
                )
            )
            return version

    def record_health(self, registered_model: str, partition: str | None, model_version: str, **fields: Any) -> None:
        """Update one partition's monitoring signals; a new model version starts the partition afresh."""
        unknown = set(fields) - {"predictions", *HEALTH_FIELDS}
        if unknown:
            raise ValueError(f"unknown partition_health fields: {sorted(unknown)}")
        partition = _partition(partition)
        key = (partition_health.c.registered_model == registered_model) & (partition_health.c.partition == partition)
        now = dt.datetime.now(dt.UTC)
        with self.engine().begin() as connection:
            row = connection.execute(sa.select(partition_health.c.model_version).where(key)).first()
            if row is None:
                connection.execute(
                    partition_health.insert().values(
                        registered_model=registered_model,
                        partition=partition,
                        model_version=model_version,
                        updated_at=now,
                        **fields,
                    )
                )
                return
            if row.model_version != model_version:
                fields = {name: None for name in HEALTH_FIELDS} | fields
            connection.execute(
                partition_health.update().where(key).values(model_version=model_version, updated_at=now, **fields)
            )

    def health(self, registered_model: str, model_version: str | None = None) -> pd.DataFrame:
        """Monitoring signals per partition, oldest first; only `model_version`'s when given."""
        query = sa.select(partition_health).where(partition_health.c.registered_model == registered_model)
        if model_version is not None:
            query = query.where(partition_health.c.model_version == model_version)
        with self.engine().connect() as connection:
            return pd.read_sql_query(query.order_by(partition_health.c.partition), connection)

    def record_retraining(self, **row: Any) -> None:
        with self.engine().begin() as connection:
            connection.execute(retraining_decisions.insert().values(decided_at=dt.datetime.now(dt.UTC), **row))

    def retraining_history(self, registered_model: str, limit: int = 20) -> list[dict[str, Any]]:
        """The newest retraining decisions first."""
        return self._newest(retraining_decisions, registered_model, limit)

    def last_retrain_request(self, registered_model: str) -> str | None:
        """The partition of the newest requested retrain, however many holds came after it."""
        query = (
            sa.select(retraining_decisions.c.partition)
            .where(
                (retraining_decisions.c.registered_model == registered_model)
                & (retraining_decisions.c.decision == "requested")
            )
            .order_by(retraining_decisions.c.id.desc())
            .limit(1)
        )
        with self.engine().connect() as connection:
            return connection.execute(query).scalar_one_or_none()

    def retraining_counts(self, registered_model: str) -> dict[str, int]:
        """How many retraining decisions of each kind were recorded."""
        query = (
            sa.select(retraining_decisions.c.decision, sa.func.count())
            .where(retraining_decisions.c.registered_model == registered_model)
            .group_by(retraining_decisions.c.decision)
        )
        with self.engine().connect() as connection:
            return {decision: count for decision, count in connection.execute(query)}

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

    def predictions_for(self, registered_model: str, partition: str | None) -> pd.DataFrame:
        partition = _partition(partition)
        query = sa.select(predictions).where(
            (predictions.c.registered_model == registered_model) & (predictions.c.partition == partition)
        )
        with self.engine().connect() as connection:
            return pd.read_sql_query(query, connection)

    def replace_shadow_results(self, registered_model: str, partition: str | None, table: pd.DataFrame) -> None:
        """One partition's shadow judgement (shadow_comparison's table), replacing an earlier one."""
        partition = _partition(partition)
        key = (shadow_results.c.registered_model == registered_model) & (shadow_results.c.partition == partition)
        rows = [
            {
                "registered_model": registered_model,
                "partition": partition,
                "updated_at": dt.datetime.now(dt.UTC),
                **{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()},  # NaN as NULL
            }
            for row in table.to_dict("records")
        ]
        with self.engine().begin() as connection:
            connection.execute(shadow_results.delete().where(key))
            if rows:
                connection.execute(shadow_results.insert(), rows)

    def shadow_record(self, registered_model: str, challenger: str) -> pd.DataFrame:
        """Every partition's shadow judgement of `challenger`, oldest first."""
        query = (
            sa.select(shadow_results)
            .where(
                (shadow_results.c.registered_model == registered_model) & (shadow_results.c.challenger == challenger)
            )
            .order_by(shadow_results.c.partition)
        )
        with self.engine().connect() as connection:
            return pd.read_sql_query(query, connection)

    def decisions(self, registered_model: str, limit: int = 20) -> list[dict[str, Any]]:
        """The newest promotion decisions first."""
        return self._newest(gate_decisions, registered_model, limit)

    def newest_by_decision(self, registered_model: str) -> tuple[dict[str, dict], dict[str, dict]]:
        """The newest gate decision of each kind and the newest retraining decision of each kind."""
        newest = []
        with self.engine().connect() as connection:
            for table in (gate_decisions, retraining_decisions):
                ids = (
                    sa.select(sa.func.max(table.c.id))
                    .where(table.c.registered_model == registered_model)
                    .group_by(table.c.decision)
                )
                rows = connection.execute(sa.select(table).where(table.c.id.in_(ids)))
                newest.append({row.decision: dict(row._mapping) for row in rows})
        return newest[0], newest[1]

    def _newest(self, table: sa.Table, registered_model: str, limit: int) -> list[dict[str, Any]]:
        query = sa.select(table).where(table.c.registered_model == registered_model).order_by(table.c.id.desc())
        with self.engine().connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query.limit(limit))]


def _partition(partition: str | None) -> str:
    """A partition's key as the tables hold it: an unpartitioned dataset's (None) is WHOLE_TABLE."""
    return WHOLE_TABLE if partition is None else partition


def _newest_contract(dataset: str) -> sa.Select:
    return (
        sa.select(data_contracts)
        .where(data_contracts.c.dataset == dataset)
        .order_by(data_contracts.c.version.desc())
        .limit(1)
    )


def _sqlite_wal(dbapi_connection, _record) -> None:
    """Readers (the UI, sensors, the exporter) do not block the writer, and commits do not wait on fsync twice."""
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
    dbapi_connection.execute("PRAGMA cache_size=-131072")  # 128 MiB: bulk inserts into the id index stay in memory
    # One writer at a time: another process's write (a partition's predictions, on a parallel run or Dask worker)
    # is waited for, up to a minute, instead of failing after SQLite's default 5 s.
    dbapi_connection.execute("PRAGMA busy_timeout=60000")


def _bulk_insert(
    connection: sa.Connection, table: sa.Table, rows: pd.DataFrame, constants: dict[str, Any], order_by: str
) -> None:
    """Insert a frame of strings and numbers, plus columns that hold one value for every row, in `order_by` order
    (so an index on it grows by appending), through the driver's fast path: COPY of CSV on PostgreSQL; on SQLite
    statements of many rows each (`VALUES (?, ?, ?), ...`), so the driver binds a statement's values in one call
    and SQLite inserts all its rows without holding the GIL. SQLAlchemy's executemany of row dicts costs about five
    times as much, reading the rows from JSON in SQLite twice as much (docs/benchmarks.md)."""
    dialect = connection.dialect
    constants = {name: _stored(table.c[name], value, dialect) for name, value in constants.items()}
    columns = [*rows.columns, *constants]
    # Sorting costs about a fifth of the insert, so rows already in order (e.g. sequential ids) skip it.
    in_order = _in_text_order(rows[order_by])
    cursor = connection.connection.dbapi_connection.cursor()
    if dialect.name == "postgresql":
        # pyarrow writes the CSV in C++ without the GIL, five times as fast as pandas' `to_csv`; NaN becomes NULL
        buffer = io.BytesIO()
        ordered = rows if in_order else rows.sort_values(order_by)
        arrow = pa.Table.from_pandas(ordered.assign(**constants), preserve_index=False)
        pacsv.write_csv(arrow, buffer, pacsv.WriteOptions(include_header=False))
        buffer.seek(0)
        cursor.copy_expert(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer)
    elif dialect.name == "sqlite":
        width = len(rows.columns)
        step = min(10_000, (cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - len(constants)) // width)
        key = list(rows.columns).index(order_by) + 1
        order = "" if in_order else f" ORDER BY CAST(column{key} AS TEXT)"  # the column's TEXT order, as indexed
        select = ", ".join([f"column{i + 1}" for i in range(width)] + ["?"] * len(constants))
        values = rows.to_numpy(dtype=object)  # Python ints, floats and strings, as the driver binds them
        for start in range(0, len(values), step):
            part = values[start : start + step]
            placeholders = ", ".join([f"({', '.join('?' * width)})"] * len(part))
            cursor.execute(
                f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {select} FROM (VALUES {placeholders}){order}",
                [*constants.values(), *part.ravel().tolist()],  # NaN is stored as NULL
            )
    else:
        connection.execute(table.insert(), rows.sort_values(order_by).assign(**constants).to_dict("records"))


def _in_text_order(values: pd.Series) -> bool:
    """Whether `values` already come in the order of their text: strings in order, or non-negative integers in
    order that all have as many digits (e.g. sequential ids)."""
    if values.empty:
        return True
    if pd.api.types.is_integer_dtype(values):
        first, last = values.iloc[0], values.iloc[-1]
        return bool(first >= 0 and len(str(first)) == len(str(last)) and values.is_monotonic_increasing)
    return pd.api.types.infer_dtype(values, skipna=False) == "string" and values.is_monotonic_increasing


def _stored(column: sa.Column, value: Any, dialect: sa.Dialect) -> Any:
    """`value` as the dialect stores it, e.g. a timestamp as text on SQLite."""
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor(value) if processor else value


@cache
def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_wal)
    with engine.begin() as connection:
        inspector = sa.inspect(connection)
        wide = "predictions" in inspector.get_table_names()  # an app database from before scoring batches
        metadata.create_all(connection)
        if wide:
            _split_wide_predictions(connection)
        if "predictions" not in inspector.get_view_names():
            query = PREDICTIONS_VIEW.compile(connection, compile_kwargs={"literal_binds": True})
            create = "CREATE VIEW IF NOT EXISTS" if connection.dialect.name == "sqlite" else "CREATE OR REPLACE VIEW"
            connection.execute(sa.text(f"{create} predictions AS {query}"))
    return engine


def _split_wide_predictions(connection: sa.Connection) -> None:
    """Move the rows of the old one-table layout into scoring batches and their rows, then drop it."""
    wide = sa.table("predictions", *(sa.column(column.name) for column in predictions.c))
    key = [wide.c.registered_model, wide.c.partition]
    connection.execute(
        scoring_batches.insert().from_select(
            ["registered_model", "partition", "model_version", "scored_at"],
            sa.select(*key, sa.func.max(wide.c.model_version), sa.func.max(wide.c.scored_at)).group_by(*key),
        )
    )
    batch = (scoring_batches.c.registered_model == wide.c.registered_model) & (
        scoring_batches.c.partition == wide.c.partition
    )
    connection.execute(
        scored_rows.insert().from_select(
            ["batch_id", "id", "prediction", "probability"],
            sa.select(scoring_batches.c.id, wide.c.id, wide.c.prediction, wide.c.probability).join_from(
                wide, scoring_batches, batch
            ),
        )
    )
    connection.execute(sa.text("DROP TABLE predictions"))
