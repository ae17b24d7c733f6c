"""`nexus demo` end to end, this checkout beside a reference commit, each on a fresh embedded home, one after the
other in the same run: the demo's own "Done in" figure and the wall time with start-up.

Usage: .venv/bin/python benchmarks/demo_bench.py [--reference REV] [--monitor-days N]

The reference runs from a git worktree of REV with this checkout's virtualenv (its packages first on the path).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def demo(code: Path, home: Path, monitor_days: int) -> tuple[float, float]:
    """(the demo's "Done in" seconds, wall seconds) of `nexus demo` run from the code in `code`."""
    env = {**os.environ, "NEXUS_HOME": str(home), "PYTHONPATH": str(code), "DAGSTER_HOME": str(home / "dagster")}
    env.pop("NEXUS_CONFIG", None)
    started = time.monotonic()
    cli = "import sys; from nexus_cli.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", cli, "demo", "--monitor-days", str(monitor_days)]
    out = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - started
    return float(re.search(r"Done in (\d+) s", out).group(1)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="HEAD~1", help="the commit to compare with (default HEAD~1)")
    parser.add_argument("--monitor-days", type=int, default=14)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(reference), args.reference], cwd=REPO, check=True
        )
        try:
            rows = [
                (f"reference {args.reference}", demo(reference, Path(folder) / "home-reference", args.monitor_days)),
                ("this checkout", demo(REPO, Path(folder) / "home-this", args.monitor_days)),
            ]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=REPO, check=False)
    print(f"| code | demo's Done in ({args.monitor_days} monitored days) | wall with start-up |\n|---|---|---|")
    for name, (done, wall) in rows:
        print(f"| {name} | {done:.0f} s | {wall:.0f} s |")


if __name__ == "__main__":
    main()
