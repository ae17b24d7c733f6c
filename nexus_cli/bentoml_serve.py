"""`bentoml serve` with a Prometheus multiprocess directory of this instance's own.

BentoML keeps every instance's metric files in one directory under `BENTOML_HOME` and empties it when an instance
starts, so a second service on the same store (a replica, a restart beside the old one) wipes the first one's
counters for good. Here each instance gets `prometheus_multiproc_dir/<host>-<port>`, emptied only by its own start,
through the same container setting BentoML's own test plugin sets.

    python -m nexus_cli.bentoml_serve TARGET --host HOST --port PORT [other `bentoml serve` options]
"""

from __future__ import annotations

import argparse
import os
import sys

from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml_cli.cli import cli


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="3000")
    address, _ = parser.parse_known_args(argv)
    instance = f"{address.host}-{address.port}"
    folder = os.path.join(BentoMLContainer.bentoml_home.get(), "prometheus_multiproc_dir", instance)
    BentoMLContainer.prometheus_multiproc_dir.set(folder)
    # One OpenMP thread per worker (the workers inherit it), as the models' own n_jobs are: the service runs a worker
    # per core, and histogram boosting's OpenMP threads in two workers contending made an ensemble's p50 at one
    # client 31 ms instead of 8 (docs/benchmarks.md). Set before any worker starts its OpenMP runtime.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cli(["serve", *argv], prog_name="bentoml")


if __name__ == "__main__":
    main(sys.argv[1:])
