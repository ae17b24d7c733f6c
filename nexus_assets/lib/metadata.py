"""Materialization metadata that makes a frame readable in the Dagster UI."""

from __future__ import annotations

import dagster as dg
import pandas as pd


def frame_metadata(frame: pd.DataFrame, preview_rows: int = 10) -> dict[str, dg.MetadataValue]:
    """Row count, column schema, null rates and a preview table."""
    null_rates = frame.isna().mean() if len(frame) else pd.Series(0.0, index=frame.columns)
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])
        ),
        "null_rates": dg.MetadataValue.md(
            null_rates[null_rates > 0].rename("null rate").to_frame().to_markdown(floatfmt=".2%")
            if (null_rates > 0).any()
            else "no missing values"
        ),
        "preview": dg.MetadataValue.md(frame.head(preview_rows).to_markdown(index=False)),
    }
