"""The embedded instance's event log: Dagster's one-file SQLite event log, with its connections kept open.

Dagster's `ConsolidatedSqliteEventLogStorage` creates an engine and opens (and closes) a connection for every
event it stores; closing the file's last connection checkpoints the write-ahead log, and every commit waits for
the disk. On a range of a year of daily partitions that was three quarters of the run (docs/performance.md). Here
each process keeps one engine with a pool of open connections, and commits are durable at the next checkpoint
(`synchronous=NORMAL` in WAL mode: an application crash loses nothing; a power cut may lose the last events).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS


class PooledSqliteEventLogStorage(ConsolidatedSqliteEventLogStorage):
    """Configured in dagster.yaml like the class it extends (`base_dir`)."""

    _engines: dict[int, sa.Engine]
    _tables: set[str]

    def _engine(self) -> sa.Engine:
        engines = self.__dict__.setdefault("_engines", {})
        pid = os.getpid()  # a forked process opens its own connections, never its parent's
        if pid not in engines:
            engine = sa.create_engine(
                self._conn_string,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
                pool_size=4,
            )
            sa.event.listen(engine, "connect", _tune)
            engines[pid] = engine
        return engines[pid]

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        with self._engine().connect() as connection, connection.begin():
            yield connection

    def has_table(self, table_name: str) -> bool:
        # Asked before every check evaluation is stored; a table, once there, stays.
        tables = self.__dict__.setdefault("_tables", set())
        if table_name not in tables:
            engine = self._engine()
            with engine.connect() as connection:
                if engine.dialect.has_table(connection, table_name):
                    tables.add(table_name)
        return table_name in tables

    def dispose(self) -> None:
        for engine in self.__dict__.get("_engines", {}).values():
            engine.dispose()
        super().dispose()


def _tune(connection, _record) -> None:
    connection.execute("PRAGMA synchronous=NORMAL")
