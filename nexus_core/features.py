"""The one place that knows the feature transform, shared by training, batch scoring and serving.

`model_inputs` puts rows into canonical types; `build_preprocessor` is the scikit-learn
`ColumnTransformer` that every model pipeline starts with, so the fitted transform travels inside
the logged model and nothing outside it can drift from training.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder

from nexus_core.ensemble import members

# Bounds on the model's input width, whatever the number of distinct values (README "Your own data").
ONE_HOT_LEVELS = 30  # columns per categorical feature; rarer levels share one
ONE_HOT_MIN_ROWS = 5  # a level seen in fewer training rows joins the rare ones
TEXT_TERMS = 5_000  # words and word pairs per text column, for the sparse input of linear models
DENSE_TEXT_TERMS = 200  # the same for the dense input of the tree families
LIST_TOKENS = 100  # the most frequent tokens of a list column


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model, by role (the data contract's): numbers, and text-valued columns encoded by
    cardinality and shape."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    high_cardinality: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    lists: tuple[tuple[str, str], ...] = ()  # (column, delimiter)
    mostly_empty: tuple[str, ...] = ()  # numeric columns that get a missing indicator beside their values
    time: tuple[str, ...] = ()  # timestamps whose hour, weekday and month feed the model (never the time itself)
    timezone: str = "UTC"  # where the time's hour and day are read

    @property
    def numbers(self) -> list[str]:
        return [*self.numeric, *self.mostly_empty]

    @property
    def documents(self) -> list[str]:
        """Columns read as documents (text and lists), where missing is empty."""
        return [*self.text, *(column for column, _ in self.lists)]

    @property
    def strings(self) -> list[str]:
        return [*self.categorical, *self.high_cardinality, *self.documents]

    @property
    def columns(self) -> list[str]:
        return [*self.numbers, *self.strings, *self.time]


def model_inputs(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The feature columns in canonical types: numbers as float64, categories as strings (NaN when missing), text
    and lists as strings (empty when missing)."""
    # Text that the data contract's check found readable as numbers; what is not is missing, as a None is.
    numeric = {c: read_numbers(frame[c]) for c in spec.numbers}
    categorical = {c: _strings(frame[c]) for c in (*spec.categorical, *spec.high_cardinality)}
    documents = {c: _strings(frame[c]).fillna("") for c in spec.documents}
    times = {c: frame[c] for c in spec.time}  # as they come: TimeParts reads them in the dataset's time zone
    return pd.DataFrame({**numeric, **categorical, **documents, **times}, index=frame.index)[spec.columns]


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
    elif pd.api.types.is_float_dtype(column) and (column.dropna() % 1 == 0).all():
        # whole numbers that a missing value made float (ids, codes): "17" whichever partition they come from
        strings = column.astype("Int64").astype(str).where(column.notna(), np.nan).astype(object)
    else:
        strings = column.map(str, na_action="ignore").astype(object)
    # Missing as NaN, never None (JSON null, Parquet null): the imputer fills NaN only, so a None would reach the
    # encoder as an unknown category instead of the "missing" one the model was trained with.
    return strings.where(strings.notna(), np.nan) if strings.hasnans else strings


def build_preprocessor(
    spec: FeatureSpec, dense: bool = False, seed: int = 0, regression: bool = False, native_categories: bool = False
) -> ColumnTransformer:
    """Each column encoded by its role: numbers imputed and scaled (with a missing indicator where mostly empty),
    categories one-hot with rare levels pooled, many-level categories target-encoded (cross-fitted), text as TF-IDF
    of words and word pairs, lists as a column per frequent token. Sparse where sparse, unless `dense`. With
    `native_categories` both kinds of categories stay text (missing as "missing") for a model that encodes them
    itself (`native_columns` says where they are)."""
    categories = _labels() if native_categories else _categories(sparse=not dense)
    many = _labels() if native_categories else _target_encoding(seed, regression)
    parts = [
        ("numeric", _numbers(add_indicator=False), list(spec.numeric)),
        ("mostly_empty", _numbers(add_indicator=True), list(spec.mostly_empty)),
        ("categorical", categories, list(spec.categorical)),
        ("high_cardinality", many, list(spec.high_cardinality)),
    ]
    for column in spec.text:  # one column at a time: a vectorizer reads a 1-D column of documents
        terms = DENSE_TEXT_TERMS if dense else TEXT_TERMS
        tfidf = TfidfVectorizer(max_features=terms, ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
        parts.append((f"text:{column}", tfidf, column))
    if spec.time:
        parts.append(("time", TimeParts(timezone=spec.timezone), list(spec.time)))
    for column, delimiter in spec.lists:
        tokens = rf"\s*([^{re.escape(delimiter)}]*[^{re.escape(delimiter)}\s])"  # tokens without the spaces around
        vectorizer = CountVectorizer(token_pattern=tokens, lowercase=False, binary=True, max_features=LIST_TOKENS)
        parts.append((f"list:{column}", vectorizer, column))
    return ColumnTransformer(
        [(name, step, columns) for name, step, columns in parts if len(columns)],
        sparse_threshold=0 if dense else 0.3,
        verbose_feature_names_out=False,
    )


def fitted_spec(pipeline: BaseEstimator) -> FeatureSpec | None:
    """The roles a fitted pipeline's `build_preprocessor` step encodes its columns by (an ensemble's members all
    read the same ones); None for another shape."""
    try:
        step = members(pipeline)[0].named_steps["features"]
        fitted = {name: columns for name, _, columns in step.transformers_ if name != "remainder"}
    except (AttributeError, KeyError):
        return None
    listed = [list(columns) for name, columns in fitted.items() if not isinstance(columns, str)]
    if any(not all(isinstance(c, str) for c in columns) for columns in listed):
        return None
    return FeatureSpec(
        numeric=tuple(fitted.get("numeric", ())),
        categorical=tuple(fitted.get("categorical", ())),
        high_cardinality=tuple(fitted.get("high_cardinality", ())),
        text=tuple(columns for name, columns in fitted.items() if name.startswith("text:")),
        lists=tuple((columns, "") for name, columns in fitted.items() if name.startswith("list:")),
        mostly_empty=tuple(fitted.get("mostly_empty", ())),
        time=tuple(fitted.get("time", ())),
        timezone=step.named_transformers_["time"].timezone if "time" in fitted else "UTC",
    )


class TimeParts(TransformerMixin, BaseEstimator):
    """The cyclical parts of times (hour of day, weekday, month) that vary in the training rows, one-hot: what a
    model can use of a time, never the time itself, which only grows and puts every new partition outside the
    training range. Times with a UTC offset are read in `timezone`; a missing time has no part."""

    PARTS = ("hour", "weekday", "month")

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone

    def fit(self, X: pd.DataFrame, y: object = None) -> TimeParts:
        frame = pd.DataFrame(X)
        self.n_features_in_ = frame.shape[1]
        self.columns_ = [str(c) for c in frame.columns]
        self.levels_ = []  # (column index, part, values seen in training), for each part that varies
        for index in range(frame.shape[1]):
            times = self._local(frame.iloc[:, index])
            for part in self.PARTS:
                seen = sorted(int(v) for v in getattr(times.dt, part).dropna().unique())
                if len(seen) > 1:
                    self.levels_.append((index, part, seen))
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        frame = pd.DataFrame(X)
        times = [self._local(frame.iloc[:, index]) for index in range(frame.shape[1])]
        blocks = [
            getattr(times[index].dt, part).to_numpy(dtype=np.float64)[:, None] == np.asarray(seen, dtype=np.float64)
            for index, part, seen in self.levels_
        ]
        # no part varies: one column of zeros, since scikit-learn cannot stack an empty block into a sparse matrix
        return np.hstack(blocks).astype(np.float64) if blocks else np.zeros((len(frame), 1))

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        names = [f"{self.columns_[index]}_{part}_{value}" for index, part, seen in self.levels_ for value in seen]
        return np.array(names or [f"{self.columns_[0]}_no_part_varies"], dtype=object)

    def _local(self, values: pd.Series) -> pd.Series:
        """Times as naive datetimes in the time zone: stored (datetime64) ones, or those a request brought."""
        if pd.api.types.is_datetime64_any_dtype(values):
            aware = values.dt.tz is not None
            return values.dt.tz_convert(self.timezone).dt.tz_localize(None) if aware else values
        zone = ZoneInfo(self.timezone)
        local = [
            v.astimezone(zone).replace(tzinfo=None) if isinstance(v, dt.datetime) and v.tzinfo else v for v in values
        ]
        return pd.Series(pd.to_datetime(pd.Series(local, dtype=object), errors="coerce"), index=values.index)


def _numbers(add_indicator: bool) -> Pipeline:
    return Pipeline(
        [("impute", SimpleImputer(strategy="median", add_indicator=add_indicator)), ("scale", StandardScaler())]
    )


def _categories(sparse: bool) -> Pipeline:
    encode = OneHotEncoder(
        handle_unknown="infrequent_if_exist",
        min_frequency=ONE_HOT_MIN_ROWS,
        max_categories=ONE_HOT_LEVELS,
        sparse_output=sparse,
    )
    return Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")), ("encode", encode)])


def _labels() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing"))])


def native_columns(step: ColumnTransformer) -> list[int]:
    """Where a fitted `build_preprocessor(native_categories=True)` step puts the categories, in its output."""
    where = [step.output_indices_.get(name, slice(0, 0)) for name in ("categorical", "high_cardinality")]
    return [index for part in where for index in range(part.start, part.stop)]


def _target_encoding(seed: int, regression: bool) -> Pipeline:
    # told, not guessed: a regression target of whole numbers (counts, ratings) is no set of classes
    kind = "continuous" if regression else "auto"
    encode = TargetEncoder(target_type=kind, cv=KFold(5, shuffle=True, random_state=seed))
    return Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")), ("encode", encode)])


def compile_preprocessor(pipeline: Pipeline, spec: FeatureSpec) -> Callable[[list[dict]], np.ndarray] | None:
    """The fitted `build_preprocessor` step of `pipeline` as array arithmetic straight from records (dicts keyed by
    column, `None` when missing), for serving's small batches: there, pandas and scikit-learn's per-call input
    checks cost 20 times the arithmetic (docs/benchmarks.md). The caller must check it against the step's own
    `transform` before using it; None when the step is not the one `build_preprocessor` makes."""
    steps = _fitted_steps(pipeline)
    if steps is None:
        return None
    numeric, categorical, time = steps
    try:
        medians = numeric.named_steps["impute"].statistics_
        mean, scale = numeric.named_steps["scale"].mean_, numeric.named_steps["scale"].scale_
        fill = categorical.named_steps["impute"].fill_value
        encoder = categorical.named_steps["encode"]
        categories = encoder.categories_
        infrequent = encoder.infrequent_categories_
    except (AttributeError, KeyError):
        return None
    if mean is None or scale is None or len(medians) != len(spec.numeric) or len(categories) != len(spec.categorical):
        return None
    numeric_columns, width, lookups = list(spec.numeric), len(spec.numeric), []
    for column, values, rare in zip(spec.categorical, categories, infrequent, strict=True):
        # OneHotEncoder's layout: the frequent levels in order, then one column for all rare (and unseen) levels
        rare = set() if rare is None else set(rare.tolist())
        frequent = [value for value in values.tolist() if value not in rare]
        lookup = {value: width + i for i, value in enumerate(frequent)}
        pooled = width + len(frequent) if rare else -1
        lookup.update(dict.fromkeys(rare, pooled))
        lookups.append((column, lookup, pooled))
        width += len(frequent) + bool(rare)
    time_parts = []  # (column, part, {value: output column}) in TimeParts' layout
    for index, part, seen in time.levels_ if time is not None else []:
        time_parts.append((time.columns_[index], part, {value: width + i for i, value in enumerate(seen)}))
        width += len(seen)
    if time is not None and not time.levels_:
        width += 1  # TimeParts' column of zeros
    zone = ZoneInfo(time.timezone) if time is not None else None

    def transform(records: list[dict]) -> np.ndarray:
        rows = np.arange(len(records))
        out = np.zeros((len(records), width))
        numbers = np.array([[record[c] for c in numeric_columns] for record in records], dtype=np.float64)
        numbers = np.where(np.isnan(numbers), medians, numbers)  # None became NaN above
        numbers -= mean
        numbers /= scale  # in StandardScaler's order, so the floats are the same
        out[:, : len(numeric_columns)] = numbers
        for column, lookup, pooled in lookups:
            # unseen levels go where the rare ones are, or (-1) nowhere: all their one-hot columns stay zero
            index = np.array(
                [lookup.get(fill if (v := r[column]) is None else v, pooled) for r in records], dtype=np.int64
            )
            known = index >= 0
            out[rows[known], index[known]] = 1.0
        for column, part, lookup in time_parts:
            for row, record in enumerate(records):
                if (moment := record.get(column)) is None:
                    continue
                local = moment.astimezone(zone).replace(tzinfo=None) if moment.tzinfo else moment
                if (at := lookup.get(local.weekday() if part == "weekday" else getattr(local, part))) is not None:
                    out[row, at] = 1.0
        return out

    return transform


def input_bounds(pipeline: BaseEstimator, spec: FeatureSpec) -> dict[str, tuple[float, float]]:
    """The range of each numeric input that the fitted transform keeps within float32, which tree models compute in
    (with a factor 2 to spare): a larger finite number would become infinite inside the model and fail it. For an
    ensemble, the range every member keeps."""
    limit = float(np.finfo(np.float32).max) / 2
    bounds = dict.fromkeys(spec.numbers, (-limit, limit))
    for member in members(pipeline):
        steps = _fitted_steps(member)
        if steps is None:  # not built by build_preprocessor: the plain float32 range
            continue
        try:
            scaler = steps[0].named_steps["scale"]
            scaled = zip(scaler.feature_names_in_, scaler.mean_, scaler.scale_, strict=True)
        except (AttributeError, KeyError):
            continue
        for column, mean, scale in scaled:
            if column in bounds:
                low, high = bounds[column]
                bounds[column] = (max(low, float(mean - limit * scale)), min(high, float(mean + limit * scale)))
    return bounds


def _fitted_steps(pipeline: Pipeline) -> tuple[Pipeline, Pipeline, TimeParts | None] | None:
    """The fitted numeric, categorical (and time) parts of the pipeline's `build_preprocessor` step; None for another
    shape, or one with other encodings, which the pipeline's own transform serves."""
    try:
        step = pipeline.named_steps["features"]
        fitted = [name for name, _, columns in step.transformers_ if name != "remainder"]
        if fitted not in (["numeric", "categorical"], ["numeric", "categorical", "time"]):
            return None
        time = step.named_transformers_["time"] if "time" in fitted else None
        return step.named_transformers_["numeric"], step.named_transformers_["categorical"], time
    except (AttributeError, KeyError):
        return None
