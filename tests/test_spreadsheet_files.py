"""Files as spreadsheets export them: a byte-order mark, CRLF line ends, headers with spaces and units, numbers
with thousands separators, currency and percent signs or a unit word. They are read without the user editing the
file, the parse is shown in the data contract, and a value that does not parse blocks its partition alone, naming
the column and the row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from vega_datasets import local_data

from nexus_cli.runs import materialize
from nexus_core.features import read_numbers
from nexus_defs.definitions import build_definitions

TARGET = "Nonfarm change (thousands)"


def _export(path, bad_cell: bool = False) -> pd.DataFrame:
    """US employment 2006-2015, one row a month, as a spreadsheet saves it ("CSV UTF-8": BOM, CRLF)."""
    jobs = local_data.us_employment()
    sheet = pd.DataFrame(
        {
            "Month": pd.to_datetime(jobs["month"]).dt.strftime("%m/%d/%Y"),
            "Nonfarm (thousands)": jobs["nonfarm"].map("{:,}".format),
            "Construction (thousands)": jobs["construction"].map("{:,}".format),
            "Government share": (100 * jobs["government"] / jobs["nonfarm"]).map("{:.2f}%".format),
            "Retail trade ($bn payroll)": jobs["retail_trade"].map("${:,.1f}".format),
            "Survey lag": np.where(jobs.index % 2, "1 month", "2 months"),
            TARGET: jobs["nonfarm_change"].map("{:,}".format),
        }
    )
    if bad_cell:
        sheet.loc[30, "Construction (thousands)"] = "see note 4"  # July 2008
    path.write_bytes(sheet.to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig"))
    return jobs


def _config(write_config):
    dataset = {
        "target": TARGET,
        "task": "regression",
        "timestamp": "Month",
        "id_column": None,
        "columns": None,
        "classes": None,
        "start_date": None,
        "end_date": None,
    }
    return write_config({"dataset": dataset, "checks": {"ranges": None}}, source={"kind": "file", "path": "jobs.csv"})


def test_a_spreadsheet_export_is_read_as_numbers_with_the_parse_shown(tmp_path, write_config, instance):
    jobs = _export(tmp_path / "jobs.csv")
    config = _config(write_config)
    defs = build_definitions(config)
    assert materialize(defs, instance, ["raw_data", "features"], "2006-01-01").success
    contract = defs.resources["app_db"].contract(config.dataset.name)["columns"]
    nonfarm = contract["Nonfarm (thousands)"]
    assert (nonfarm["role"], nonfarm["type"], nonfarm["parse"]) == ("numeric", "number", "'135,450' -> 135450")
    assert (nonfarm["usual"]["min"], nonfarm["usual"]["max"]) == (135450, 137263), "read as numbers, not text"
    assert contract["Government share"]["parse"] == "'16.13%' -> 16.13"
    assert contract["Retail trade ($bn payroll)"]["parse"] == "'$15,351.5' -> 15351.5"
    assert contract["Survey lag"]["parse"] == "'2 months' -> 2 (unit: month, months)"
    assert (contract[TARGET]["role"], contract[TARGET]["type"]) == ("target", "number")
    features = defs.load_asset_value("features", partition_key="2006-01-01", instance=instance)
    year = jobs[pd.to_datetime(jobs["month"]).dt.year == 2006]
    assert features["Nonfarm (thousands)"].tolist() == year["nonfarm"].astype(float).tolist()
    assert features[TARGET].tolist() == year["nonfarm_change"].astype(float).tolist()


def test_a_cell_that_is_not_a_number_blocks_its_period_naming_column_and_row(tmp_path, write_config, instance):
    _export(tmp_path / "jobs.csv", bad_cell=True)
    defs = build_definitions(_config(write_config))
    assert materialize(defs, instance, ["raw_data", "features"], "2006-01-01").success  # fixes the contract
    result = materialize(defs, instance, ["raw_data", "features"], "2008-01-01")
    assert not result.success
    [schema] = [e for e in result.get_asset_check_evaluations() if e.check_name == "schema" and not e.passed]
    assert "'Construction (thousands)'" in schema.description and "'see note 4'" in schema.description
    assert materialize(defs, instance, ["raw_data", "features"], "2009-01-01").success, "other years go on"


def test_numbers_as_people_write_them():
    written = pd.Series(["90,000", "$1,234.50", "-€5", "18.01%", "10+ years", "< 1 year", "36 months", "forty", None])
    assert read_numbers(written).tolist()[:7] == [90000.0, 1234.5, -5.0, 18.01, 10.0, 1.0, 36.0]
    assert read_numbers(written)[7:].isna().all()
