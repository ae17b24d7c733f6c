"""Shadow scoring's cost to the live path: the service at concurrency 32 with no shadow, with the challenger
answering a share of requests in shadow (`--share`, 10% by default) and every request (the worst case),
alternated to show the noise.

Needs a champion and an older version in the embedded store (`make demo`) and `wrk`. The benchmark points the
`challenger` alias at the newest other version while it runs and puts it back afterwards. Run:
    .venv/bin/python -m benchmarks.shadow_bench [--seconds 20] [--rounds 2] [--share 0.1]
Prints, per run: req/s, p50, p99 and errors, then how many shadow rows were stored.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import sqlalchemy as sa

from benchmarks.serving_bench import _example_rows, _server, _wrk
from nexus_core import registry, schema, shadow_predictions
from nexus_core.config import load_config
from nexus_core.settings import load_settings
from nexus_resources.modes import build_resources
from serving.model import load_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--share", default="0.1", help="the NEXUS_SERVING_SHADOW_SHARE measured beside 0 and 1")
    args = parser.parse_args()
    name = load_config().model.registered_name
    resource = build_resources()["mlflow"]
    resource.activate()
    client = resource.client()
    named = registry.aliases(client, name)
    champion = named.get(registry.CHAMPION)
    others = sorted((int(v.version) for v in client.search_model_versions(f"name = '{name}'")), reverse=True)
    challenger = next((str(v) for v in others if str(v) != champion), None)
    if champion is None or challenger is None:
        sys.exit(f"{name} needs a champion and another version: run `make demo` first")
    model = load_version(client, name, champion)
    row = _example_rows(name, champion, model).iloc[:1].to_dict("records")
    engine = sa.create_engine(load_settings().app_database_url)
    results = []
    client.set_registered_model_alias(name, registry.CHALLENGER, challenger)
    try:
        for round_ in range(1, args.rounds + 1):
            for share in ("0", args.share, "1"):
                env = {"DO_NOT_TRACK": "1", "NEXUS_SERVING_WORKERS": str(args.workers)}
                env["NEXUS_SERVING_SHADOW_SHARE"] = share
                shadow_predictions.create_table(engine)
                before = _rows(engine)
                with _server(["bentoml", "serve", "serving.service:NexusModelService"], env, "/readyz") as url:
                    _wrk(f"{url}/predict", {"records": row}, 32, 3)  # warm-up, and the challenger loaded
                    measured = _wrk(f"{url}/predict", {"records": row}, 32, args.seconds)
                label = "no shadow" if share == "0" else f"shadow v{challenger}, share {float(share):.0%}"
                results.append({"round": round_, "service": label, **measured, "shadow rows": _rows(engine) - before})
    finally:
        if named.get(registry.CHALLENGER):
            client.set_registered_model_alias(name, registry.CHALLENGER, named[registry.CHALLENGER])
        else:
            client.delete_registered_model_alias(name, registry.CHALLENGER)
    print(f"model {name}: champion v{champion}, challenger v{challenger}; concurrency 32, {args.seconds} s each\n")
    print(pd.DataFrame(results).to_markdown(index=False))


def _rows(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(schema.shadow_predictions)).scalar_one()


if __name__ == "__main__":
    main()
