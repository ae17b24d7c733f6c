"""Materialization metadata that makes a frame readable in the Dagster UI."""

from __future__ import annotations

import dagster as dg
import pandas as pd


def frame_metadata(
    frame: pd.DataFrame,
    contract: dict[str, dict[str, str]] | None = None,
    descriptions: dict[str, str] | None = None,
    preview_rows: int = 10,
) -> dict[str, dg.MetadataValue]:
    """Row count, column schema (with the data contract's roles and types, and the configured column descriptions,
    when given), null rates, a preview."""
    null_rates = frame.isna().mean() if len(frame) else pd.Series(0.0, index=frame.columns)
    descriptions = descriptions or {}

    def described(name: str, what: str) -> str:
        return f"{descriptions[name]} ({what})" if name in descriptions else what

    if contract:
        schema = [
            dg.TableColumn(name, column["type"], description=described(name, _role(column, frame, name)))
            for name, column in contract.items()
        ]
    else:
        schema = [dg.TableColumn(str(c), str(t), description=descriptions.get(str(c))) for c, t in frame.dtypes.items()]
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=schema)),
        "null_rates": dg.MetadataValue.md(
            null_rates[null_rates > 0].rename("null rate").to_frame().to_markdown(floatfmt=".2%")
            if (null_rates > 0).any()
            else "no missing values"
        ),
        "preview": dg.MetadataValue.md(frame.head(preview_rows).to_markdown(index=False)),
    }


def _role(column: dict, frame: pd.DataFrame, name: str) -> str:
    role = f"{column['role']}: {column['why']};" if column.get("why") else f"{column['role']},"
    return f"{role} read as {frame[name].dtype}" if name in frame else f"{role} missing"


def key_values(mapping: dict) -> dg.MetadataValue:
    """A flat mapping as a two-column table, easier to read in the UI than a JSON blob."""
    rows = "\n".join(f"| {key} | {value} |" for key, value in mapping.items())
    return dg.MetadataValue.md(f"| | |\n|---|---|\n{rows}")
