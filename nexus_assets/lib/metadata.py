"""Materialization metadata that makes a frame readable in the Dagster UI."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np
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


def table(
    frame: pd.DataFrame, missing: str = "—", descriptions: dict[str, str] | None = None, digits: int = 4
) -> dg.TableMetadataValue:
    """A frame as a table the Dagster UI sorts and types by its schema; a value that is not known shows as `missing`
    (for a judgement: "not judged"), never as nan."""
    descriptions = descriptions or {}
    schema = dg.TableSchema(
        [dg.TableColumn(str(c), _column_type(t), description=descriptions.get(str(c))) for c, t in frame.dtypes.items()]
    )
    records = [
        dg.TableRecord({str(c): _cell(v, missing, digits) for c, v in row.items()}) for row in frame.to_dict("records")
    ]
    return dg.MetadataValue.table(records, schema=schema)


def _column_type(dtype: object) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    return "float" if pd.api.types.is_float_dtype(dtype) else "string"


def _cell(value: object, missing: str, digits: int) -> str | int | float | bool:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return round(float(value), digits)
    return str(value)
