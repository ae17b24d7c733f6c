"""The BentoML service: the `champion` of the registry over HTTP, swapped in without a restart.

Every worker watches the registry's `champion` alias itself (a reload route would reach only the
worker that got the request). On a move it loads the new version in the background, checks it on the
model's input example, and only then swaps; a version that fails stays out and the old one keeps serving.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument
from fastapi import FastAPI
from pydantic import BaseModel
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response

from nexus_core.config import load_config
from nexus_core.registry import CHAMPION, aliases
from nexus_core.settings import load_settings, mlflow_client
from serving.batcher import MicroBatcher
from serving.model import ServedModel, load_version

log = logging.getLogger("nexus.serving")
SETTINGS = load_settings()
MAX_RECORDS, POLL_SECONDS = SETTINGS.serving_max_records, SETTINGS.serving_poll_seconds
TRACE_SAMPLE_RATE = SETTINGS.serving_trace_sample_rate

REQUESTS = bentoml.metrics.Counter(
    name="nexus_predict_requests",
    documentation="Predict requests by model version and outcome",
    labelnames=["model_version", "outcome"],
)
ROWS = bentoml.metrics.Counter(
    name="nexus_predicted_rows", documentation="Rows predicted by model version", labelnames=["model_version"]
)
LATENCY = bentoml.metrics.Histogram(
    name="nexus_predict_latency_seconds",
    documentation="Predict latency by model version",
    labelnames=["model_version"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SWAPS = bentoml.metrics.Counter(
    name="nexus_model_swaps", documentation="Attempted model swaps by outcome", labelnames=["model_version", "outcome"]
)
SERVED = bentoml.metrics.Gauge(
    name="nexus_served_model_version",
    documentation="The registered model version the service answers with (the newest swap of any worker)",
    labelnames=["registered_model"],
    multiprocess_mode="livemostrecent",
)

admin = FastAPI()


class PredictRequest(bentoml.IODescriptor):
    """The body of `POST /predict`: records keyed by the served version's feature names."""

    records: list[dict[str, Any]]

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> PredictRequest:
        # The fields above document the body (OpenAPI, the BentoML client); the served version parses and checks
        # the raw bytes against its own signature in one pass (ServedModel.parse), which costs half of parsing
        # them here into generic dicts first and validating those again.
        return cls.model_construct(records=await request.body())


class ModelRef(BaseModel):
    name: str
    version: str


class Prediction(BaseModel):
    id: int | str | None = None  # the record's id (the dataset's id column), when it sent one
    prediction: int | float | str
    probabilities: dict[str, float] | None = None


class PredictResponse(BaseModel):
    """Documents the answer; `predict` writes its JSON directly (10,000 response models cost more than the model)."""

    model: ModelRef
    predictions: list[Prediction]


@bentoml.service(
    name="nexus-model",
    workers=SETTINGS.serving_workers,
    # BentoML keeps a timer per request alive for the whole timeout, even after the answer; a short timeout
    # keeps that set (and its GC cost) small. 10 s still fits a 10,000-row request many times over.
    traffic={"timeout": 10, "concurrency": 256},
    http={"max_request_size": 64 * 1024 * 1024},
    # Per-request access lines cost more CPU than a prediction; /metrics counts requests instead.
    logging={"access": {"enabled": False}},
    # Unsampled, OpenTelemetry's middleware still builds spans per request and per body chunk (a sixth of a
    # worker's CPU at concurrency 32): /predict skips it unless tracing is asked for.
    tracing={"sample_rate": TRACE_SAMPLE_RATE, "excluded_urls": None if TRACE_SAMPLE_RATE else ["/predict"]},
)
@bentoml.asgi_app(admin, path="/")
class NexusModelService:
    def __init__(self) -> None:
        config = load_config(check_files=False)  # the service reads no data: only names from the config
        self.name = SETTINGS.serving_model or config.model.registered_name
        self.id_column = config.dataset.id_column
        self.token = SETTINGS.serving_token or None
        self.client = mlflow_client(SETTINGS)
        self.model: ServedModel | None = None
        self.last_swap: dict[str, Any] = {}
        self.waiting = "the registry has not been read yet"  # why no version is served, while none is
        self.batcher = MicroBatcher(lambda: self.model)
        self._poll()  # not ready (503) until a version loads; the watcher keeps trying
        # Long-lived objects (the model, the libraries) out of the collector's way: fewer long GC pauses.
        gc.freeze()
        threading.Thread(target=self._watch, name="champion-watcher", daemon=True).start()

    def __is_ready__(self) -> bool:
        return self.model is not None

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, records: bytes, ctx: bentoml.Context) -> PredictResponse:
        """Predictions for a list of records keyed by feature name, and the model version that made them."""
        self._authorize(ctx)
        model = self.model
        if model is None:
            # Answered here: BentoML replaces the message of any 5xx it renders with "An unexpected error".
            error = {"error": f"no {CHAMPION} version of {self.name} is loaded yet: {self.waiting}"}
            ctx.response.status_code = HTTPStatus.SERVICE_UNAVAILABLE  # BentoML sets the answer's status from here
            return Response(to_json(error), media_type="application/json")
        rows = model.parse(records)  # `records` arrives as the raw body (PredictRequest)
        if not rows:
            raise InvalidArgument("records: the list is empty; send at least one record")
        if len(rows) > MAX_RECORDS:
            raise BentoMLException(
                f"records: {len(rows)} records exceed the maximum of {MAX_RECORDS} per request; split the batch",
                error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        started = time.perf_counter()
        used, predictions = await self.batcher.predict(rows)
        LATENCY.labels(model_version=used.version).observe(time.perf_counter() - started)
        REQUESTS.labels(model_version=used.version, outcome="ok").inc()
        ROWS.labels(model_version=used.version).inc(len(rows))
        answer = {"model": {"name": used.name, "version": used.version}, "predictions": predictions}
        return Response(to_json(answer, inf_nan_mode="null"), media_type="application/json")

    @admin.get("/model")
    def model_info(self) -> dict[str, Any]:
        """The served version: name, version, alias, promotion time, training window and holdout metrics."""
        if self.model is None:
            return {"name": self.name, "version": None, "waiting": self.waiting, "last_swap": self.last_swap}
        return {**self.model.info, "last_swap": self.last_swap}

    def _authorize(self, ctx: bentoml.Context) -> None:
        if self.token and ctx.request.headers.get("authorization") != f"Bearer {self.token}":
            raise BentoMLException("a valid bearer token is required", error_code=HTTPStatus.UNAUTHORIZED)

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            self._poll()

    def _poll(self) -> None:
        try:
            self._refresh()
        except Exception as exc:  # the service must outlive a registry outage
            self.waiting = f"the registry is unreachable ({type(exc).__name__}); retrying"
            log.exception("could not read the %s alias of %s", CHAMPION, self.name)

    def _refresh(self) -> None:
        """Swap to the registry's champion if it moved and the new version passes its check."""
        wanted = aliases(self.client, self.name).get(CHAMPION)
        current = self.model.version if self.model else None
        if wanted is None:
            self.waiting = "no version holds the alias: the promotion gate has not promoted one (see champion_model)"
            return
        if wanted == current or self.last_swap.get("refused") == wanted:
            return
        try:
            candidate = load_version(self.client, self.name, wanted, self.id_column)
        except Exception as exc:
            self.last_swap = {"refused": wanted, "serving": current, "reason": f"{type(exc).__name__}: {exc}"}
            self.waiting = f"version {wanted} was refused ({self.last_swap['reason']})"
            SWAPS.labels(model_version=wanted, outcome="refused").inc()
            log.error("refused version %s of %s, still serving %s: %s", wanted, self.name, current, exc)
            return
        self.model = candidate  # one assignment: a request sees the old or the new model, never a mix
        self.last_swap = {"version": wanted, "previous": current, "at": candidate.info["loaded_at"]}
        SWAPS.labels(model_version=wanted, outcome="swapped").inc()
        SERVED.labels(registered_model=self.name).set(float(wanted))
        log.info("now serving version %s of %s (was %s)", wanted, self.name, current)
