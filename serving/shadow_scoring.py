"""Shadow scoring: the `challenger` answers a share of live requests too, on a background thread, and both answers
are stored for `shadow_comparison` to judge once the labels arrive.

Off the request's path: a request only draws a random number and, when chosen, hands its parsed records and
answers to a bounded queue (dropped, and counted, when the queue is full). The thread wakes every `FLUSH_SECONDS`,
scores whatever has queued in one call, at the lowest CPU priority, and writes the rows in one insert; nothing it
does reaches an answer. Waking per request instead cost a tenth of the throughput whatever the share: each call's
fixed cost holds the interpreter lock the requests need (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import random
import threading
import time
from typing import Any

import bentoml
import sqlalchemy as sa

from nexus_core import shadow_predictions
from serving.model import ServedModel

log = logging.getLogger("nexus.serving")

SHADOWED = bentoml.metrics.Counter(
    name="nexus_shadow_records",
    documentation="Records the challenger answered in shadow, by outcome (stored, dropped: queue full, failed)",
    labelnames=["challenger_version", "outcome"],
)


FLUSH_SECONDS = 0.5


class Shadow:
    def __init__(self, name: str, share: float, database_url: str, max_pending: int = 2_000) -> None:
        self.name, self.share = name, share
        self.model: ServedModel | None = None  # the challenger, loaded by the service's watcher
        self.refused: str | None = None
        self._engine = sa.create_engine(database_url, pool_pre_ping=True)
        self._pending: queue.Queue = queue.Queue(maxsize=max_pending)  # requests, not records
        self._random = random.Random()
        if share > 0:
            threading.Thread(target=self._run, name="shadow-scorer", daemon=True).start()

    def offer(self, records: list[dict[str, Any]], answers: list[dict[str, Any]], champion: ServedModel) -> None:
        """On the request's path: maybe queue the request for the challenger; never blocks, never raises."""
        challenger = self.model
        if challenger is None or challenger.version == champion.version or self._random.random() >= self.share:
            return
        try:
            self._pending.put_nowait((challenger, champion, records, answers, dt.datetime.now(dt.UTC)))
        except queue.Full:
            SHADOWED.labels(challenger_version=challenger.version, outcome="dropped").inc(len(records))

    def describe(self) -> dict[str, Any]:
        return {"share": self.share, "version": self.model.version if self.model else None, "refused": self.refused}

    def _run(self) -> None:
        # this thread only (Linux threads are tasks): live requests go first on a busy machine
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        created = False
        while True:
            batch = [self._pending.get()]
            time.sleep(FLUSH_SECONDS)  # let the batch fill: one call per interval, not per request
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            for challenger in {id(item[0]): item[0] for item in batch}.values():
                mine = [item for item in batch if item[0] is challenger]
                try:
                    if not created:
                        shadow_predictions.create_table(self._engine)
                        created = True
                    self._score(challenger, mine)
                except Exception as exc:  # the shadow never takes the service down
                    records = sum(len(item[2]) for item in mine)
                    SHADOWED.labels(challenger_version=challenger.version, outcome="failed").inc(records)
                    log.warning("shadow scoring by version %s failed (%s: %s)", challenger.version, type(exc), exc)

    def _score(self, challenger: ServedModel, batch: list[tuple]) -> None:
        records = [record for item in batch for record in item[2]]
        shadows = iter(challenger.answer(records))
        rows = []
        for _, champion, request, answers, served_at in batch:
            for record, answer, theirs in zip(request, answers, shadows, strict=False):
                record_id = record.get(champion.id_column) if champion.id_column else None
                rows.append(
                    {
                        "registered_model": self.name,
                        "record_id": None if record_id is None else str(record_id),
                        "source": "live",
                        "served_at": served_at,
                        "champion_version": champion.version,
                        "champion_prediction": str(answer["prediction"]),
                        "champion_probability": shadow_predictions.probability(answer, champion.classes),
                        "challenger_version": challenger.version,
                        "challenger_prediction": str(theirs["prediction"]),
                        "challenger_probability": shadow_predictions.probability(theirs, challenger.classes),
                    }
                )
        shadow_predictions.write(self._engine, rows)
        SHADOWED.labels(challenger_version=challenger.version, outcome="stored").inc(len(rows))
