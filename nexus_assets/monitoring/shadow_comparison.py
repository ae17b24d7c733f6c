"""`shadow_comparison`: how the challenger would have done on the live requests it answered in shadow, judged
per partition against the labels known so far, beside the champion that answered them."""

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from nexus_assets.lib.keys import inputs
from nexus_assets.lib.ranges import by_partition, output
from nexus_assets.monitoring.performance import stored_score
from nexus_assets.training.metrics import metrics_for
from nexus_core import shadow_predictions
from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase

COLUMNS = ["source", "champion", "challenger", "labelled", "agreement", "champion_score", "challenger_score", "gain"]


def build_shadow_comparison(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    name, id_column = config.model.registered_name, config.dataset.id_column or "row"
    metric = metrics_for(config.dataset.task)[config.metric]

    @dg.asset(
        key=config.asset("shadow_comparison"),
        ins=inputs(config, "ground_truth"),
        group_name="monitoring",
        kinds={"pandas", "sql"},
        code_version="1",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def shadow_comparison(context: dg.AssetExecutionContext, ground_truth: Any, app_db: AppDatabase) -> dg.Output:
        """The challenger's shadow answers to live requests beside the champion's, against a partition's labels."""
        values, metadata = {}, {}
        for key, truth in by_partition(context, ground_truth).items():
            labels = truth.assign(record_id=truth[id_column].astype(str))[["record_id", "label"]]
            rows = shadow_predictions.read(app_db.engine(), name, labels["record_id"].tolist()).merge(
                labels, on="record_id"
            )
            values[key] = table = compare(config, metric, rows)
            app_db.replace_shadow_results(name, key, table)
            if table.empty:
                note = (
                    f"no shadow answers for the {len(labels)} labelled records of {key}: the service shadows the "
                    "challenger when NEXUS_SERVING_SHADOW_SHARE > 0 and a challenger differs from the champion"
                )
            else:
                note = "; ".join(
                    f"challenger v{r.challenger} {metric.name} {r.challenger_score:.4f} vs champion v{r.champion} "
                    f"{r.champion_score:.4f} on {r.labelled} labelled {r.source} records ({r.agreement:.0%} agree)"
                    for r in table.itertuples()
                )
            context.log.info(note)
            metadata[key] = {
                "dagster/row_count": dg.MetadataValue.int(int(table["labelled"].sum()) if len(table) else 0),
                "comparison": dg.MetadataValue.md(
                    table.to_markdown(index=False, floatfmt=".4f") if len(table) else note
                ),
                "summary": note,
                "metric": metric.name,
            }
        return output(context, values, metadata)

    return shadow_comparison


def compare(config: NexusConfig, metric, rows: pd.DataFrame) -> pd.DataFrame:
    """Per champion and challenger version pair: the labelled records both answered, how often they agreed, and
    the metric of each on them."""
    results = []
    for (source, champion, challenger), pair in rows.groupby(["source", "champion_version", "challenger_version"]):
        scores = [
            stored_score(
                config,
                metric,
                pair.rename(columns={f"{who}_prediction": "prediction", f"{who}_probability": "probability"}),
            )
            for who in ("champion", "challenger")
        ]
        gain = metric.gain(scores[1], scores[0]) if not np.isnan(scores).any() else np.nan
        agreement = float((pair["champion_prediction"] == pair["challenger_prediction"]).mean())
        results.append([source, champion, challenger, len(pair), agreement, *scores, gain])
    return pd.DataFrame(results, columns=COLUMNS)
