"""The serving Bento: how it is built (`serving_bento` per champion, `base` before there is one) and served.

Every Bento packages the same code from `bentofile.yaml`; the running service follows the registry's `champion`
alias itself, so serving the newest Bento runs what was packaged and still swaps to newer champions in place.
A version's Bento also holds its model (`bentoml containerize nexus-model:v<version>` makes an image of it).
"""

from __future__ import annotations

from pathlib import Path

import bentoml
import yaml

from nexus_core.config import REPO_ROOT

BENTOFILE = Path(__file__).with_name("bentofile.yaml")
BASE = "base"  # the Bento built before any champion exists


def options() -> dict:
    return yaml.safe_load(BENTOFILE.read_text())


def build(version: str = BASE, labels: dict[str, str] | None = None, models: list[str] | None = None) -> bentoml.Bento:
    """`nexus-model:<version>` from the bentofile, or the one already in the store under that tag."""
    bento = options()
    try:
        return bentoml.bentos.get(f"{bento['name']}:{version}")
    except bentoml.exceptions.NotFound:
        return bentoml.bentos.build(
            **bento, version=version, labels=labels or {}, models=models or [], build_ctx=str(REPO_ROOT)
        )


def newest(registered_model: str | None = None) -> bentoml.Bento:
    """The newest serving Bento in the store (of `registered_model`'s champions, where it has one: in a deployment
    of many each model's service runs its own); `base` is built first when the store has none."""
    try:
        bentos = bentoml.bentos.list(options()["name"])
    except bentoml.exceptions.NotFound:  # an empty store
        bentos = []
    own = [b for b in bentos if registered_model and b.info.labels.get("registered_model") == registered_model]
    if own or bentos:
        return max(own or bentos, key=lambda b: b.info.creation_time)
    return build()
