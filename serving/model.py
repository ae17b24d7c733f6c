"""A served model version: loaded from the registry, checked on its input example, described for `GET /model`."""

from __future__ import annotations

import datetime as dt
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NotRequired

import mlflow
import numpy as np
import pandas as pd
import sklearn
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.tracking import MlflowClient
from pydantic import ConfigDict, Field, Strict, StrictFloat, StrictInt, StrictStr, TypeAdapter
from pydantic_core import to_json
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from typing_extensions import TypedDict

from nexus_core.ensemble import is_ensemble, members, votes, weights
from nexus_core.ensemble import weighted as ensemble_of
from nexus_core.features import FeatureSpec, compile_preprocessor, fitted_spec, input_bounds, model_inputs
from nexus_core.inference import bounded, decision_threshold, predict, target_range
from nexus_core.inference import classes as model_classes
from nexus_core.registry import CHAMPION, load_pipeline
from nexus_core.trees import UnsafeModel

_NUMBER_TYPES = {"double", "float", "long", "integer"}


@dataclass
class ServedModel:
    """One version, ready to predict: the pipeline, the record schema built from its signature, its facts."""

    name: str
    version: str
    pipeline: Pipeline
    spec: FeatureSpec
    info: dict[str, Any] = field(default_factory=dict)
    classes: list | None = None
    body: TypeAdapter | None = None
    id_column: str | None = None  # the dataset's id column: a record may carry it, and its answer echoes it
    max_records: int = 10_000
    example: list[dict[str, Any]] = field(default_factory=list)  # validated records of the version's input example
    fast: BaseEstimator | None = None  # the model reading validated records through compiled feature steps (checked)
    threshold: float | None = None  # a binary model's decision threshold, logged with it

    def __post_init__(self) -> None:
        # TypedDicts validate straight into dicts: no model objects to build and dump per record.
        bounds = input_bounds(self.pipeline, self.spec)
        fields = {
            c: Annotated[StrictFloat, Field(ge=bounds[c][0], le=bounds[c][1])] | None for c in self.spec.numbers
        } | {c: StrictStr | None for c in self.spec.strings}
        # a time may be left out: its parts are then unknown, as for a missing value
        fields |= {c: NotRequired[Annotated[dt.datetime, Strict()] | None] for c in self.spec.time}
        if self.id_column and self.id_column not in fields:
            fields[self.id_column] = NotRequired[StrictInt | StrictStr | None]
        record = TypedDict(f"Record_v{self.version}", fields)
        record.__pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)
        records = Annotated[list[record], Field(min_length=1, max_length=self.max_records)]
        body = TypedDict(f"PredictBody_v{self.version}", {"records": records})  # noqa: UP013 (versioned name)
        body.__pydantic_config__ = ConfigDict(extra="forbid")
        self.body = TypeAdapter(body)
        classes = model_classes(self.pipeline)
        self.classes = None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]
        self.threshold = decision_threshold(self.pipeline)
        self.target_range = target_range(self.pipeline)

    def healthy(self) -> bool:
        """Whether the version still answers its own input example (tells a bad request from a broken server)."""
        try:
            return len(self.answer(self.example)) == len(self.example)
        except Exception:
            return False

    def answer(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A prediction per validated record, with the record's id when it carries one."""
        # the compiled steps give the same numbers as the pipeline's own transforms, checked at load
        fast = self.fast is not None
        predictions = self._answers(self.fast, records) if fast else self.predict(self.frame(records))
        if self.id_column:
            for record, prediction in zip(records, predictions, strict=True):
                if self.id_column in record:
                    prediction["id"] = record[self.id_column]
        return predictions

    def predict(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """A prediction per row of a frame in the training columns, through the whole pipeline."""
        return self._answers(self.pipeline, frame)

    def _answers(self, model: Any, inputs: pd.DataFrame | np.ndarray) -> list[dict[str, Any]]:
        """A prediction per row (with class probabilities for classifiers), in JSON-ready types."""
        # scikit-learn's joblib wrapper re-applies every process-wide warning filter around each task, i.e. each of
        # a forest's trees: with the dozen filters the serving libraries install, a quarter of a forest's predict.
        # Requests are validated (finite, bounded) before they get here, so the finiteness checks go too.
        with warnings.catch_warnings(), sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            warnings.resetwarnings()
            warnings.simplefilter("ignore")
            if self.classes is None:
                raw = model.predict(inputs)
            else:
                labels, probabilities = predict(model, inputs, self.threshold)
        if self.classes is None:  # an answer outside the target range it learned from is clipped, and says so
            values, clipped = bounded(self.pipeline, raw)
            return [
                {"prediction": float(value), **({"clipped_from": float(was)} if cut else {})}
                for value, was, cut in zip(values, raw, clipped, strict=True)
            ]
        labels = labels.tolist()  # JSON-ready Python values
        keys = [str(c) for c in self.classes]
        return [
            {"prediction": label, "probabilities": dict(zip(keys, map(float, row), strict=True))}
            for label, row in zip(labels, probabilities, strict=True)
        ]

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        """The records of a `{"records": [...]}` JSON body, parsed and checked against the signature in one pass
        (pydantic-core, no intermediate Python objects); a `pydantic.ValidationError` names each bad field."""
        return self.body.validate_json(body)["records"]

    def frame(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        """Validated records in the types the pipeline was trained on, built column by column."""
        columns = {c: [record.get(c) for record in records] for c in self.spec.columns}
        return model_inputs(pd.DataFrame(columns, columns=self.spec.columns), self.spec)


def load_version(
    client: MlflowClient, name: str, version: str, id_column: str | None = None, max_records: int = 10_000
) -> ServedModel:
    """Load `version`, build its request schema, and check it answers its own input example.

    Failing to reach the registry or the artifacts raises what the storage raised (worth retrying); a version
    whose content fails a check raises `UnsafeModel` (not worth retrying until the alias moves)."""
    uri = f"models:/{name}/{version}"
    info = _describe(client, name, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(uri, dst_path=tmp)
        if not (Path(local) / MLMODEL_FILE_NAME).is_file():  # a store that lost the files can find them again
            raise FileNotFoundError(f"the artifact store holds no {MLMODEL_FILE_NAME} file for {uri}")
        try:
            return _check(local, uri, name, str(version), info, id_column, max_records)
        except UnsafeModel:
            raise
        except Exception as exc:  # anything the downloaded content does wrong is the content's fault
            raise UnsafeModel(f"{uri} failed its check: {type(exc).__name__}: {exc}") from exc


def _check(
    local: str, uri: str, name: str, version: str, info: dict, id_column: str | None, max_records: int
) -> ServedModel:
    pipeline = _single_threaded(load_pipeline(local))
    logged = Model.load(local)
    if logged.signature is None:
        raise UnsafeModel(f"{uri} has no signature; the service cannot validate requests for it")
    example = logged.load_input_example(local)
    if example is None:
        raise UnsafeModel(f"{uri} has no input example to check it with")
    inputs = logged.signature.inputs.to_dict()
    spec = fitted_spec(pipeline) or FeatureSpec(
        numeric=tuple(c["name"] for c in inputs if c["type"] in _NUMBER_TYPES),
        categorical=tuple(c["name"] for c in inputs if c["type"] not in _NUMBER_TYPES),
    )
    if sorted(spec.columns) != sorted(c["name"] for c in inputs):
        raise UnsafeModel(f"{uri}: its signature's columns are not the ones its feature step reads")
    model = ServedModel(name, version, pipeline, spec, info, id_column=id_column, max_records=max_records)
    if shares := weights(pipeline):
        info["members"] = shares
    if model.threshold is not None:
        objective = (logged.metadata or {}).get("threshold_objective")
        positive = model.classes[1]
        info["decision_threshold"] = {"positive_class": positive, "from": model.threshold, "objective": objective}
    model.example = model.parse(to_json({"records": example.to_dict("records")}, inf_nan_mode="null"))
    model.fast = fast_model(model)
    answers = model.answer(model.example)
    if len(answers) != len(example):
        raise UnsafeModel(f"{uri} answered {len(answers)} predictions for {len(example)} example rows")
    return model


def fast_model(model: ServedModel) -> BaseEstimator | None:
    """The version's model reading validated records through its feature step compiled (each member's, for an
    ensemble, averaged by the same vote), if every step compiles; else None (the pipeline's own transforms serve)."""
    shares = votes(model.pipeline) or {"model": 1.0}
    fast = {}
    for name, member in zip(shares, members(model.pipeline), strict=True):
        transform = _compiled_transform(model, member)
        if transform is None:
            return None
        fast[name] = Pipeline([("features", FunctionTransformer(transform)), ("model", member[-1])])
    return ensemble_of(fast, shares) if is_ensemble(model.pipeline) else fast["model"]


def _compiled_transform(model: ServedModel, pipeline: Pipeline) -> Callable[[list[dict]], np.ndarray] | None:
    """`pipeline`'s compiled feature step if it gives exactly the step's own numbers on the example, on a record
    with every value missing and on one with unseen categories; else None."""
    transform = compile_preprocessor(pipeline, model.spec)
    if transform is None or not model.example:
        return None
    unseen = {**model.example[0], **dict.fromkeys(model.spec.strings, "\x00unseen")}
    probe = [*model.example, dict.fromkeys(model.spec.columns), unseen]
    expected = np.asarray(pipeline[:-1].transform(model.frame(probe)), dtype=np.float64)
    got = transform(probe)
    return transform if got.shape == expected.shape and np.array_equal(got, expected, equal_nan=True) else None


def _single_threaded(pipeline: Pipeline) -> Pipeline:
    """One thread per predict call: the service already runs a call per core (workers) and batches requests, and
    joblib's thread dispatch costs a forest tens of milliseconds per call (docs/benchmarks.md)."""
    for member in members(pipeline):  # an ensemble's frozen members are set one by one
        threaded = {key: 1 for key, value in member.get_params().items() if key.endswith("n_jobs") and value != 1}
        member.set_params(**threaded)
    return pipeline


def _describe(client: MlflowClient, name: str, version: str) -> dict[str, Any]:
    model_version = client.get_model_version(name, version)
    tags = model_version.tags
    run = client.get_run(model_version.run_id) if model_version.run_id else None
    holdout = {
        k.removeprefix("holdout_"): v for k, v in (run.data.metrics if run else {}).items() if k.startswith("holdout_")
    }
    return {
        "name": name,
        "version": version,
        "alias": CHAMPION,
        "promoted_at": tags.get("nexus.promoted_at"),
        "family": tags.get("nexus.family"),
        "trained_on": tags.get("dagster.partition_range"),
        "data_hash": tags.get("nexus.data_hash"),
        "holdout_metrics": holdout,
        "mlflow_run_id": model_version.run_id,
        "loaded_at": dt.datetime.now(dt.UTC).isoformat(),
    }
