"""`dagster-daemon` on a clock a test sets: the file given first holds `{"at", "wall", "rate"}`, meaning the time
was `at` when the wall clock read `wall`, and runs `rate` times as fast since (so minimum intervals pass quickly).

Usage: python tests/clocked_daemon.py CLOCK_FILE run -w workspace.yaml

Dagster reads the time through `dagster._time`, whose two hooks exist for tests to freeze or move it; the daemon's
schedules, sensors and automation conditions then see the test's day, while everything else runs for real.
"""

import datetime as dt
import json
import sys
import time
from pathlib import Path
from unittest import mock


def main() -> None:
    clock_file, sys.argv = Path(sys.argv[1]), ["dagster-daemon", *sys.argv[2:]]

    def timestamp() -> float:
        clock = json.loads(clock_file.read_text())
        return clock["at"] + (time.time() - clock["wall"]) * clock["rate"]

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(timestamp(), dt.UTC)

    with (
        mock.patch("dagster._time._mockable_get_current_timestamp", timestamp),
        mock.patch("dagster._time._mockable_get_current_datetime", now),
    ):
        from dagster._daemon.cli import main as daemon

        daemon()


if __name__ == "__main__":
    main()
