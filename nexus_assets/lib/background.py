"""Overlap producing chunks with consuming them: the consumer runs on a thread and sees the chunks as an iterator."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T, R = TypeVar("T"), TypeVar("R")
_DONE = object()


class _Failed(Generic[T]):
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Background(Generic[T, R]):
    """`with Background(consume) as sink: sink.put(chunk)`; leaving the block waits for `consume` and re-raises
    its error. If the producer fails, the consumer's iterator raises too, so a transaction it holds rolls back."""

    def __init__(self, consume: Callable[[Iterator[T]], R], depth: int = 2) -> None:
        self._consume, self._chunks = consume, queue.Queue(maxsize=depth)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._future: Future[R] | None = None

    def __enter__(self) -> Background[T, R]:
        self._future = self._pool.submit(self._consume, self._iterate())
        return self

    def put(self, chunk: T) -> None:
        if not self._offer(chunk):  # the consumer stopped early: surface its error now
            self._future.result()
            raise RuntimeError("the consumer returned before the producer finished")

    def __exit__(self, kind, error, traceback) -> None:
        try:
            self._offer(_Failed(error) if error else _DONE)
            if error is None:
                self.result = self._future.result()
            else:
                self._future.exception()  # wait for the rollback; the producer's error is the one to report
        finally:
            self._pool.shutdown(wait=True)

    def _offer(self, item: object) -> bool:
        """Queue `item`; False if the consumer has already finished."""
        while not self._future.done():
            try:
                self._chunks.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _iterate(self) -> Iterator[T]:
        while (chunk := self._chunks.get()) is not _DONE:
            if isinstance(chunk, _Failed):
                raise RuntimeError("the producer failed") from chunk.error
            yield chunk
