"""`Compute`: where a step's per-partition data work runs, in the run's process or on a Dask cluster.

Dagster schedules the runs; inside a run, the heavy assets hand each partition to `Compute.each` as one task. On
the local engine the tasks run one after the other in the run's process (the path of a single machine). With
`compute.engine: dask` they run in parallel on the cluster's workers, which read and write the partition's files
themselves (`PartitionFiles`), so only each task's small result (counts, a bounded sample) reaches the run. A
worker that dies mid-task has the task run again on another: every task replaces its partition's outputs whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import dagster as dg

from nexus_core.config import NexusConfig

Item = TypeVar("Item")


class Compute(dg.ConfigurableResource):
    """Runs per-partition work where each dataset's `compute` section says; opens the Dask client a step uses and
    closes it when the step's tasks are done."""

    def each(
        self, config: NexusConfig, work: Callable[..., Any], items: Sequence[Item], *shared: Any, what: str = "task"
    ) -> Iterator[tuple[Item, Any]]:
        """`(item, work(item, *shared))` for each item, as each finishes. On Dask, `shared` (a model, a spec) is
        sent to every worker once, not once per task. A task that fails raises `dg.Failure` naming its item."""
        if config.compute.engine == "local":
            for item in items:
                yield item, work(item, *shared)
            return
        from distributed import as_completed

        with _client(config) as client:
            # Computed rather than scattered: a value a task made is made again if every worker holding it dies
            # (scattered data has no lineage: a worker killed mid-task lost the model with it); each worker fetches
            # it once for all its tasks.
            sent = [client.submit(_same, value, pure=False) for value in shared]
            futures = {client.submit(work, item, *sent, pure=False): item for item in items}
            try:
                for future in as_completed(futures, loop=client.loop):
                    item = futures[future]
                    try:
                        yield item, future.result()
                    except Exception as exc:
                        raise dg.Failure(
                            f"{what} {item} failed on the Dask cluster at {config.compute.address}: "
                            f"{type(exc).__name__}: {exc}.{_died(exc)} Nothing of it was kept half-written; "
                            "re-execute the run."
                        ) from exc
            finally:
                client.cancel(list(futures))

    def client(self, config: NexusConfig) -> Any:
        """The cluster's client as the process's default, for work a Dask library spreads itself and finds the
        client of by default (`lightgbm.dask`); close it when done."""
        return _client(config, default=True)


def _same(value: Any) -> Any:
    return value


def _died(exc: Exception) -> str:
    """What to do when the task's worker died: Dask gave up on the task, or lost what it was sent with it."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    if not isinstance(exc, KilledWorker | CancelledError):
        return ""
    return (
        " The workers running it died, most often of memory (the nanny stops a worker at 95% of its memory limit):"
        " give the workers more memory, or make the partitions smaller; the workers' logs say."
    )


def _client(config: NexusConfig, default: bool = False) -> Any:
    from distributed import Client

    address = config.compute.address
    try:
        return Client(address, timeout=config.compute.connect_timeout_seconds, set_as_default=default)
    except OSError as exc:
        raise dg.Failure(
            f"cannot reach the Dask scheduler at {address} (compute.scheduler in {config.path}): {exc}. "
            "Start the cluster (nexus stack starts one) or set compute.engine: local; then re-execute the run."
        ) from None
