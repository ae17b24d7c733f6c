"""`nexus dev` (`make dev`): the Dagster UI and daemon (`dagster dev`) over the store `nexus demo` uses."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import NoReturn

from nexus_cli.processes import venv_bin
from nexus_cli.runs import dagster_home
from nexus_core.config import REPO_ROOT
from nexus_core.settings import load_settings
from nexus_defs.definitions import defs


def dev(args: argparse.Namespace) -> NoReturn:
    """Replace this process with `dagster dev`, started in DAGSTER_HOME beside the instance's own dagster.yaml (the
    template in the checkout would draw Dagster's warning at every start), the paths a user gave made absolute."""
    home = dagster_home()
    os.environ["NEXUS_HOME"] = str(load_settings().home.resolve())
    for variable in ("NEXUS_CONFIG", "NEXUS_DEFS"):
        if os.environ.get(variable):
            os.environ[variable] = str(Path(os.environ[variable]).resolve())
    # A bad config is refused here, naming its file and key, rather than logged by the code server behind a UI
    # that opens without the dataset.
    defs()
    # `dg dev`, which Dagster's notice proposes instead, starts from the project folder, where the template is.
    os.environ["PYTHONWARNINGS"] = "ignore:Function `dev_command` is superseded"
    # Dagster stops on SIGTERM as on SIGINT, by giving SIGTERM SIGINT's handler: where SIGINT is ignored (a
    # background job of a script, nohup), SIGTERM would be ignored too and `dagster dev` would never stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(home)
    command = ["dagster", "dev", "--host", args.host, "--port", str(args.port), "-w", str(REPO_ROOT / "workspace.yaml")]
    os.execv(venv_bin("dagster"), command)
