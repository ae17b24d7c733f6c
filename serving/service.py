"""The BentoML service: the `champion` of the registry over HTTP, swapped in without a restart.

Every worker watches the registry's `champion` alias itself (a reload route would reach only the
worker that got the request). On a move it loads the new version in the background, checks it on the
model's input example, and only then swaps; a version that fails stays out and the old one keeps serving.
A version refused because the registry or its artifacts could not be read is retried with backoff; one
refused for its content is not, until the alias moves.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import threading
import time
from http import HTTPStatus
from typing import Any

import bentoml
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response

from nexus_core import logs
from nexus_core.config import load_config
from nexus_core.registry import CHALLENGER, CHAMPION, aliases
from nexus_core.settings import RegistryMissing, load_settings, reader_client
from nexus_core.trees import UnsafeModel
from serving.batcher import MicroBatcher, UnscorableRecord
from serving.errors import ApiError, invalid_body
from serving.guard import RequestGuard
from serving.model import ServedModel, load_version
from serving.shadow_scoring import Shadow

log = logging.getLogger("nexus.serving")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one log line per swap, not a progress bar
SETTINGS = load_settings()
MAX_RECORDS, POLL_SECONDS = SETTINGS.serving_max_records, SETTINGS.serving_poll_seconds
TRACE_SAMPLE_RATE = SETTINGS.serving_trace_sample_rate
MAX_RETRY_SECONDS = 60.0  # the longest wait between attempts at a version refused for a transient reason

REQUESTS = bentoml.metrics.Counter(
    name="nexus_predict_requests",
    documentation="Predict requests that reached a model, by version and outcome (ok, client_error, server_error, "
    "unavailable); refusals before the body is read show in BentoML's request metrics",
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
CLIPPED = bentoml.metrics.Counter(
    name="nexus_clipped_predictions",
    documentation="Regression answers outside the target range the version learned from, clipped to it",
    labelnames=["model_version"],
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
    # Per-request access lines cost more CPU than a prediction; /metrics counts requests instead.
    logging={"access": {"enabled": False}},
    # Unsampled, OpenTelemetry's middleware still builds spans per request and per body chunk (a sixth of a
    # worker's CPU at concurrency 32): /predict skips it unless tracing is asked for.
    tracing={"sample_rate": TRACE_SAMPLE_RATE, "excluded_urls": None if TRACE_SAMPLE_RATE else ["/predict"]},
)
@bentoml.asgi_app(admin, path="/")
class NexusModelService:
    def __init__(self) -> None:
        logs.configure("serving")  # BentoML leaves the root at WARNING; swaps and refused requests are INFO lines
        config = load_config(check_files=False)  # the service reads no data: only names from the config
        self.name = SETTINGS.serving_model or config.model.registered_name
        self.id_column = config.dataset.id_column
        self.client = None  # opened by each poll: a registry that went away is read afresh when it is back
        self.model: ServedModel | None = None
        self.last_swap: dict[str, Any] = {}
        self.refused: dict[str, Any] | None = None  # the version the alias names but this worker refused, and why
        self._retry_at = 0.0
        self._registry_down = False
        self.waiting = "the registry has not been read yet"  # why no version is served, while none is
        self.batcher = MicroBatcher(lambda: self.model)
        self.shadow = Shadow(self.name, SETTINGS.serving_shadow_share, SETTINGS.app_database_url)
        self._poll()  # not ready (503) until a version loads; the watcher keeps trying
        # Long-lived objects (the model, the libraries) out of the collector's way, and collections 70 times rarer
        # than the default 700 allocations: a request leaves little cyclic garbage but allocates a lot, and the
        # collector's pauses set the p99 (docs/benchmarks.md: 54 to 25-32 ms at concurrency 32).
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        threading.Thread(target=self._watch, name="champion-watcher", daemon=True).start()

    def __is_ready__(self) -> bool:
        return self.model is not None

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, records: bytes, ctx: bentoml.Context) -> PredictResponse:
        """Predictions for a list of records keyed by feature name, and the model version that made them."""
        # RequestGuard has checked the token, the media type and the body's size before the body was read.
        started = time.perf_counter()
        model = self.model
        try:
            used, rows, predictions = await self._predict(model, records)
        except ApiError as error:
            error.log("POST /predict", model.version if model else None)
            outcome = "unavailable" if model is None else "client_error" if error.status < 500 else "server_error"
            REQUESTS.labels(model_version=model.version if model else "none", outcome=outcome).inc()
            # Answered here, in the one error shape: BentoML would log a traceback for every 4xx it renders.
            ctx.response.status_code = error.status  # BentoML sets the answer's status from here
            return Response(error.body(), media_type="application/json")
        LATENCY.labels(model_version=used.version).observe(time.perf_counter() - started)
        REQUESTS.labels(model_version=used.version, outcome="ok").inc()
        ROWS.labels(model_version=used.version).inc(len(predictions))
        clipped = sum("clipped_from" in prediction for prediction in predictions)
        if clipped:
            CLIPPED.labels(model_version=used.version).inc(clipped)
            low, high = used.target_range
            log.warning(
                "version %s clipped %d of %d answers to the target range it learned from [%g, %g]; "
                "the records lie outside what its training data covers",
                used.version,
                clipped,
                len(predictions),
                low,
                high,
            )
        self.shadow.offer(rows, predictions, used)
        answer = {"model": {"name": used.name, "version": used.version}, "predictions": predictions}
        return Response(to_json(answer, inf_nan_mode="null"), media_type="application/json")

    async def _predict(
        self, model: ServedModel | None, body: bytes
    ) -> tuple[ServedModel, list[dict[str, Any]], list[dict[str, Any]]]:
        if model is None:
            raise ApiError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"no {CHAMPION} version of {self.name} is loaded yet: {self.waiting}; GET /model says more",
            )
        try:
            rows = model.parse(body)  # the raw body (PredictRequest), parsed and checked in one pass
        except ValidationError as exc:
            raise invalid_body(exc, MAX_RECORDS) from None
        try:
            used, predictions = await self.batcher.predict(rows)
            return used, rows, predictions
        except UnscorableRecord as exc:
            where = "records" if exc.index is None else f"records[{exc.index}]"
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{where}: {exc}; check its values", where) from exc
        except Exception as exc:
            raise ApiError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"version {model.version} failed to predict ({type(exc).__name__}); the server log has the details",
            ) from exc

    @admin.get("/model")
    def model_info(self) -> dict[str, Any]:
        """The served version (name, version, alias, promotion time, training window, holdout metrics), the last
        swap, and the version the alias names if this worker refused it: why, and whether it will retry."""
        info = self.model.info if self.model else {"name": self.name, "version": None, "waiting": self.waiting}
        return {**info, "last_swap": self.last_swap, "refused": self.refused, "shadow": self.shadow.describe()}

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            self._poll()

    def _poll(self) -> None:
        try:
            self.client = reader_client(SETTINGS)
            named = aliases(self.client, self.name)
        except Exception as exc:  # the service must outlive a registry outage, and creates no registry
            missing = isinstance(exc, RegistryMissing)
            self.waiting = f"the registry is unreachable ({exc if missing else type(exc).__name__}); retrying"
            if not self._registry_down:  # one line per outage, not one per poll
                log.warning("cannot read the %s alias of %s (%s: %s); retrying", CHAMPION, self.name, type(exc), exc)
            self._registry_down = True
            return
        if self._registry_down:
            log.info("the registry answers again")
            self._registry_down = False
        self._refresh(named.get(CHAMPION))
        if self.shadow.share > 0:
            self._refresh_shadow(named.get(CHALLENGER))

    def _refresh_shadow(self, wanted: str | None) -> None:
        """Load the `challenger` for shadow scoring when it moved; a version that fails to load is not shadowed."""
        current = self.shadow.model.version if self.shadow.model else None
        if wanted == current or (self.shadow.refused or "").startswith(f"version {wanted}:"):
            return
        if wanted is None:
            self.shadow.model = None
            return
        try:
            self.shadow.model = load_version(self.client, self.name, wanted, self.id_column, MAX_RECORDS)
            self.shadow.refused = None
            log.info(
                "shadow scoring %.0f%% of requests with the challenger, version %s", self.shadow.share * 100, wanted
            )
        except Exception as exc:
            self.shadow.model, self.shadow.refused = None, f"version {wanted}: {type(exc).__name__}: {exc}"
            log.warning("not shadow scoring with challenger version %s: %s", wanted, exc)

    def _refresh(self, wanted: str | None) -> None:
        """Swap to the registry's champion if it moved and the new version passes its check."""
        current = self.model.version if self.model else None
        if wanted is None:
            self.waiting = "no version holds the alias: the promotion gate has not promoted one (see champion_model)"
            return
        if wanted == current:
            self.refused = None  # the alias came back to the served version
            return
        refused = self.refused if self.refused and self.refused["version"] == wanted else None
        if refused and (refused["kind"] == "content" or time.monotonic() < self._retry_at):
            return
        try:
            candidate = load_version(self.client, self.name, wanted, self.id_column, MAX_RECORDS)
        except Exception as exc:
            self._refuse(wanted, current, exc)
            return
        self.model = candidate  # one assignment: a request sees the old or the new model, never a mix
        self.refused = None
        self.last_swap = {"version": wanted, "previous": current, "at": candidate.info["loaded_at"]}
        SWAPS.labels(model_version=wanted, outcome="swapped").inc()
        SERVED.labels(registered_model=self.name).set(float(wanted))
        fields = {"model_version": wanted, "registered_model": self.name}
        log.info("now serving version %s of %s (was %s)", wanted, self.name, current, extra=fields)

    def _refuse(self, version: str, current: str | None, exc: Exception) -> None:
        content = isinstance(exc, UnsafeModel)
        attempts = self.refused["attempts"] + 1 if self.refused and self.refused["version"] == version else 1
        delay = None if content else min(POLL_SECONDS * 2**attempts, MAX_RETRY_SECONDS)
        now = dt.datetime.now(dt.UTC)
        self.refused = {
            "version": version,
            "kind": "content" if content else "transient",
            "reason": f"{type(exc).__name__}: {exc}",
            "attempts": attempts,
            "at": now.isoformat(),
            "next_retry_at": None if delay is None else (now + dt.timedelta(seconds=delay)).isoformat(),
        }
        self._retry_at = time.monotonic() + (delay or 0)
        self.waiting = f"version {version} was refused ({self.refused['reason']})"
        SWAPS.labels(model_version=version, outcome="refused").inc()
        if content:
            log.error("refused version %s of %s (its content), still serving %s: %s", version, self.name, current, exc)
        else:
            log.warning(
                "could not load version %s of %s (attempt %d, next in %.0f s), still serving %s: %s",
                *(version, self.name, attempts, delay, current, exc),
            )


NexusModelService.add_asgi_middleware(
    RequestGuard,
    token=SETTINGS.serving_token,
    max_body_bytes=SETTINGS.serving_max_body_bytes,
    read_seconds=SETTINGS.serving_read_seconds,
)
