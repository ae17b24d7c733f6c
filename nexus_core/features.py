"""The one place that knows the feature transform, shared by training, batch scoring and serving.

`model_inputs` puts rows into canonical types; `build_preprocessor` is the scikit-learn
`ColumnTransformer` that every model pipeline starts with, so the fitted transform travels inside
the logged model and nothing outside it can drift from training.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from nexus_core.config import NexusConfig


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model, by role."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def feature_spec(config: NexusConfig, frame: pd.DataFrame) -> FeatureSpec:
    """Declared column roles, with the undeclared ones inferred from the frame's dtypes."""
    dataset = config.dataset
    reserved = {dataset.target, dataset.id_column, dataset.timestamp, *dataset.columns.drop}
    declared_numeric, declared_categorical = dataset.columns.numeric, dataset.columns.categorical
    free = [c for c in frame.columns if c not in reserved]
    if declared_numeric is None:
        taken = set(declared_categorical or [])
        declared_numeric = [c for c in free if c not in taken and _is_number(frame[c])]
    if declared_categorical is None:
        declared_categorical = [c for c in free if c not in set(declared_numeric)]
    return FeatureSpec(tuple(declared_numeric), tuple(declared_categorical))


def model_inputs(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The feature columns in canonical types: numbers as float64, categories as strings (NaN when missing)."""
    # Text that the data contract's check found readable as numbers; what is not is missing, as a None is.
    numeric = {c: read_numbers(frame[c]) for c in spec.numeric}
    categorical = {c: _strings(frame[c]) for c in spec.categorical}
    return pd.DataFrame({**numeric, **categorical}, index=frame.index)[spec.columns]


# Numbers as spreadsheets write them: "90,000", "$1,234.50", "-€5", "18.01%", "10+ years", "< 1 year", "36 months".
_TEXT_NUMBER = re.compile(
    r"^\s*(?:[<>~]=?\s*)?(?P<sign>[-+])?\s*[$€£¥]?\s*"
    r"(?P<number>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)\s*(?P<mark>[%+])?\s*(?:(?P<unit>[A-Za-z]{2,})\.?)?\s*$"
)


def read_numbers(column: pd.Series) -> pd.Series:
    """A column as float64 numbers, text written as spreadsheets write numbers included (separators, currency and
    percent signs, a unit word: "18.01%" is 18.01, "36 months" 36); NaN where a value is not a number."""
    if pd.api.types.is_numeric_dtype(column):
        return column.astype("float64")
    numbers = pd.to_numeric(column, errors="coerce").astype("float64")
    text = column[numbers.isna() & column.notna()]
    if len(text):
        found = text.astype(str).str.extract(_TEXT_NUMBER)
        values = pd.to_numeric(found["number"].str.replace(",", "", regex=False), errors="coerce")
        numbers.loc[text.index] = values.where(found["sign"] != "-", -values).to_numpy()
    return numbers


def number_parse(column: pd.Series) -> str | None:
    """How `read_numbers` reads a text column, by example ('"18.01%" -> 18.01'); None when it needs no parsing."""
    if pd.api.types.is_numeric_dtype(column):
        return None
    present = column.dropna()
    text = present[pd.to_numeric(present, errors="coerce").isna()]
    numbers = read_numbers(text)
    read = text[numbers.notna()]
    if read.empty:
        return None
    units = sorted({m["unit"] for v in read.head(1000) if (m := _TEXT_NUMBER.match(str(v))) and m["unit"]})
    example = f"{read.iloc[0]!r} -> {numbers[read.index[0]]:g}"
    return example + (f" (unit: {', '.join(units)})" if units else "")


def _strings(column: pd.Series) -> pd.Series:
    # Already strings (e.g. the `features` asset's own output): a C-level type scan instead of a Python map.
    if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        strings = column
    else:
        strings = column.map(str, na_action="ignore").astype(object)
    # Missing as NaN, never None (JSON null, Parquet null): the imputer fills NaN only, so a None would reach the
    # encoder as an unknown category instead of the "missing" one the model was trained with.
    return strings.where(strings.notna(), np.nan) if strings.hasnans else strings


def build_preprocessor(spec: FeatureSpec) -> ColumnTransformer:
    """Impute and scale numbers, impute and one-hot encode categories."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric, list(spec.numeric)), ("categorical", categorical, list(spec.categorical))],
        verbose_feature_names_out=False,
    )


def compile_preprocessor(pipeline: Pipeline, spec: FeatureSpec) -> Callable[[list[dict]], np.ndarray] | None:
    """The fitted `build_preprocessor` step of `pipeline` as array arithmetic straight from records (dicts keyed by
    column, `None` when missing), for serving's small batches: there, pandas and scikit-learn's per-call input
    checks cost 20 times the arithmetic (docs/benchmarks.md). The caller must check it against the step's own
    `transform` before using it; None when the step is not the one `build_preprocessor` makes."""
    steps = _fitted_steps(pipeline)
    if steps is None:
        return None
    numeric, categorical = steps
    try:
        medians = numeric.named_steps["impute"].statistics_
        mean, scale = numeric.named_steps["scale"].mean_, numeric.named_steps["scale"].scale_
        fill = categorical.named_steps["impute"].fill_value
        categories = categorical.named_steps["encode"].categories_
    except (AttributeError, KeyError):
        return None
    if mean is None or scale is None or len(medians) != len(spec.numeric) or len(categories) != len(spec.categorical):
        return None
    numeric_columns, width, lookups = list(spec.numeric), len(spec.numeric), []
    for column, values in zip(spec.categorical, categories, strict=True):
        lookups.append((column, {value: width + i for i, value in enumerate(values.tolist())}))
        width += len(values)

    def transform(records: list[dict]) -> np.ndarray:
        rows = np.arange(len(records))
        out = np.zeros((len(records), width))
        numbers = np.array([[record[c] for c in numeric_columns] for record in records], dtype=np.float64)
        numbers = np.where(np.isnan(numbers), medians, numbers)  # None became NaN above
        numbers -= mean
        numbers /= scale  # in StandardScaler's order, so the floats are the same
        out[:, : len(numeric_columns)] = numbers
        for column, lookup in lookups:
            # -1 for unknown categories, whose one-hot columns stay all zero
            index = np.array([lookup.get(fill if (v := r[column]) is None else v, -1) for r in records], dtype=np.int64)
            known = index >= 0
            out[rows[known], index[known]] = 1.0
        return out

    return transform


def input_bounds(pipeline: Pipeline, spec: FeatureSpec) -> dict[str, tuple[float, float]]:
    """The range of each numeric input that the fitted transform keeps within float32, which tree models compute in
    (with a factor 2 to spare): a larger finite number would become infinite inside the model and fail it."""
    limit = float(np.finfo(np.float32).max) / 2
    bounds = dict.fromkeys(spec.numeric, (-limit, limit))
    steps = _fitted_steps(pipeline)
    if steps is None:  # not built by build_preprocessor: the plain float32 range
        return bounds
    try:
        scaler = steps[0].named_steps["scale"]
        scaled = zip(scaler.feature_names_in_, scaler.mean_, scaler.scale_, strict=True)
    except (AttributeError, KeyError):
        return bounds
    for column, mean, scale in scaled:
        if column in bounds:
            bounds[column] = (max(-limit, float(mean - limit * scale)), min(limit, float(mean + limit * scale)))
    return bounds


def _fitted_steps(pipeline: Pipeline) -> tuple[Pipeline, Pipeline] | None:
    """The fitted numeric and categorical parts of the pipeline's `build_preprocessor` step; None for another shape."""
    try:
        step = pipeline.named_steps["features"]
        return step.named_transformers_["numeric"], step.named_transformers_["categorical"]
    except (AttributeError, KeyError):
        return None


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
