"""Adaptive micro-batching inside one worker: concurrent requests share one `predict` call.

A pipeline call costs about the same for 1 row as for 32 (it is per-call overhead, not trees), so
while one batch computes, the next requests queue and go together. BentoML's own `batchable` endpoints
hang on DataFrames and shed load as 503 when the batcher cannot keep its latency promise; this one never
refuses a request, it only waits for the batch in front of it.

A request's failure is its own: when a batch fails, it is split and retried until only the failing requests are
left, and each of those is answered with what went wrong (`UnscorableRecord` when the model still answers its own
example, so the input is at fault; the model's error otherwise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from serving.model import ServedModel


class MicroBatcher:
    def __init__(self, current: Callable[[], ServedModel], max_rows: int = 20_000) -> None:
        self._current = current
        self._max_rows = max_rows
        self._queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future]] | None = None

    async def predict(self, records: list[dict[str, Any]]) -> tuple[ServedModel, list[dict[str, Any]]]:
        """Predictions for `records` and the model version that made them."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((records, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            rows = len(batch[0][0])
            while not self._queue.empty() and rows < self._max_rows:
                batch.append(self._queue.get_nowait())
                rows += len(batch[-1][0])
            model = self._current()  # one version per batch, even while a swap happens
            try:
                results = await asyncio.to_thread(_isolated, model, [records for records, _ in batch])
            except Exception as exc:  # never the loop: whatever escapes fails this batch's requests only
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result((model, result))


class UnscorableRecord(ValueError):
    """The model fails on this request's input while it still answers its own example."""

    def __init__(self, index: int | None, cause: Exception) -> None:
        where = f"record {index}" if index is not None else "the records together"
        super().__init__(f"the model cannot score {where}: {type(cause).__name__}: {cause}")
        self.index = index


def _isolated(model: ServedModel, requests: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]] | Exception]:
    """Each request's predictions, or the exception that is that request's alone (halving the batch to find it)."""
    try:
        return _predict(model, requests)
    except Exception as exc:
        if len(requests) > 1:
            half = len(requests) // 2
            return _isolated(model, requests[:half]) + _isolated(model, requests[half:])
        if not model.healthy():
            return [exc]
        return [UnscorableRecord(_first_failing(model, requests[0]), exc)]


def _first_failing(model: ServedModel, records: list[dict[str, Any]]) -> int | None:
    """The index of a record the model fails on by itself, by halving; None if only a combination fails."""
    start, end = 0, len(records)
    while end - start > 1:
        middle = (start + end) // 2
        try:
            model.answer(records[start:middle])
        except Exception:
            end = middle
            continue
        start = middle
    try:
        model.answer(records[start:end])
    except Exception:
        return start
    return None


def _predict(model: ServedModel, requests: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    predictions = model.answer([record for records in requests for record in records])
    out, start = [], 0
    for records in requests:
        out.append(predictions[start : start + len(records)])
        start += len(records)
    return out
