"""Asset keys under the dataset's prefix: each asset names its own key and its inputs' (`NexusConfig.asset`)."""

import dagster as dg

from nexus_core.config import NexusConfig


def inputs(config: NexusConfig, *names: str) -> dict[str, dg.AssetIn]:
    """The upstream assets passed by parameter name, as keys of this dataset."""
    return {name: dg.AssetIn(key=config.asset(name)) for name in names}
