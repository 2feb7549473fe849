"""The FastAPI app of ``genloom serve``: loaded models behind HTTP.

Routes: ``POST /v1/completions`` (OpenAI-compatible, text models, streamed as server-sent events on request),
``GET /v1/models``, ``POST /v1/generate/{model}`` (any kind: the settings ``model.generate(...)`` takes, the
kind's JSON result back with its provenance), the Open Inference Protocol v2 health, model-metadata and ``infer``
routes, and ``GET /metrics`` (Prometheus). Every bad request is a 4xx JSON error, ``{"error": {"message", "type",
"param"}}``, in the shape the ``openai`` client reads.

Requests reach their models through :mod:`genloom.serve.served` (batchers, or one at a time under a lock);
requests beyond ``queue_size`` waiting in all get 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from genloom.config import validate_model
from genloom.errors import GenloomError
from genloom.model import LoadedModel
from genloom.plugins import get_registry
from genloom.serve import inference_v2
from genloom.serve.batching import OneShotBatcher, TextBatcher
from genloom.serve.limits import ServerLimits
from genloom.serve.metrics import ServerMetrics
from genloom.serve.openai_api import CompletionRequest, completion
from genloom.serve.served import (
    RequestError,
    ServedModel,
    batched_one_shot,
    batched_pieces,
    batched_text,
    batcher_for,
    locked_pieces,
    streamed,
)

OPEN_ROUTES = ("/v2/health", "/metrics")
"""Answered without an API key: what load balancers and scrapers call."""


def create_app(models: dict[str, LoadedModel], limits: ServerLimits | None = None) -> FastAPI:
    """The app serving ``models`` (served name -> loaded model) within ``limits``."""
    limits = limits or ServerLimits()
    registry = get_registry()
    metrics = ServerMetrics()
    kinds = {name: registry.kind(model.manifest.modality) for name, model in models.items()}
    served = {
        name: ServedModel(name, model, kinds[name], batcher_for(name, model, kinds[name], limits, metrics))
        for name, model in models.items()
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for entry in served.values():  # after uvicorn has drained the requests in flight (or cancelled them)
            if entry.batcher is not None:
                await asyncio.to_thread(entry.batcher.close)

    app = FastAPI(title="genloom serve", docs_url=None, redoc_url=None, lifespan=lifespan)
    waiting = {"count": 0}

    def error_response(error: RequestError) -> JSONResponse:
        kind = "invalid_request_error" if error.status < 500 else "server_error"
        body = {"error": {"message": error.message, "type": kind, "param": error.param, "code": None}}
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        field = location[0] if location else None
        if first.get("type") == "json_invalid" or tuple(first.get("loc", ())) == ("body",):
            return error_response(RequestError(400, "the body is not a JSON object; send one, with its fields"))
        message = f"field '{field}': {first.get('msg')}" if field else str(first.get("msg"))
        return error_response(RequestError(422, message, field))

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)  # inside the guard: the route's reads count

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await _guarded(request, call_next, limits, error_response)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response

    def model_named(name: str) -> ServedModel:
        if name not in served:
            raise RequestError(404, f"model '{name}' is not served here; serving: {', '.join(sorted(served))}", "model")
        return served[name]

    def enter_queue() -> None:
        if waiting["count"] >= limits.queue_size:
            raise RequestError(503, "the server is busy; retry shortly", headers={"Retry-After": "1"})
        waiting["count"] += 1
        metrics.waiting.set(waiting["count"])

    def leave_queue() -> None:
        waiting["count"] -= 1
        metrics.waiting.set(waiting["count"])

    async def run(entry: ServedModel, settings: dict[str, Any]) -> Any:
        """``entry``'s result for ``settings``, within the queue and the timeout: from its batcher, or from its model
        in a worker thread, one request at a time. A request past its timeout leaves its batcher."""
        enter_queue()
        try:
            if isinstance(entry.batcher, TextBatcher):
                return await batched_text(entry, entry.batcher, settings, limits.timeout_seconds)
            if isinstance(entry.batcher, OneShotBatcher):
                return await batched_one_shot(entry, entry.batcher, settings, limits.timeout_seconds)

            def locked() -> Any:
                with entry.lock:
                    return entry.model.generate(**settings)

            return await asyncio.wait_for(run_in_threadpool(locked), limits.timeout_seconds)
        except asyncio.TimeoutError:
            raise RequestError(504, f"the request took longer than {limits.timeout_seconds:g} s") from None
        except GenloomError as exc:
            raise RequestError(400, str(exc)) from None
        finally:
            leave_queue()

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        data = [
            {"id": name, "object": "model", "owned_by": "genloom", "kind": e.kind.name} for name, e in served.items()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/completions", response_model=None)
    async def completions(request: CompletionRequest) -> Any:
        entry = model_named(request.model)
        if entry.kind.name != "text":
            raise RequestError(
                400, f"model '{entry.name}' makes {entry.kind.name}, not text; use /v1/generate", "model"
            )
        if request.max_tokens > limits.max_tokens:
            raise RequestError(400, f"max_tokens: at most {limits.max_tokens} here", "max_tokens")
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if request.n * len(prompts) > limits.max_count:
            raise RequestError(400, f"n x prompts: at most {limits.max_count} completions a request", "n")
        settings = _checked(entry, request.sampling())
        if request.stream:
            if request.n > 1 or len(prompts) > 1:
                raise RequestError(400, "stream: one prompt and n=1 per streamed request", "stream")
            enter_queue()
            if isinstance(entry.batcher, TextBatcher):
                source = batched_pieces(entry, entry.batcher, settings, metrics)
            else:
                source = locked_pieces(entry, settings, metrics)
            return await streamed(entry, request, source, leave_queue)
        result = await run(entry, settings)
        tokenizer = getattr(entry.model, "tokenizer", None)
        prompt_tokens = sum(len(tokenizer.encode(p)) for p in prompts) if tokenizer is not None else 0
        _count_outputs(metrics, entry, result)
        return completion(entry.name, request, result.texts, result.tokens, prompt_tokens).model_dump()

    @app.post("/v1/generate/{model}")
    async def generate(model: str, request: Request, form: str | None = None) -> JSONResponse:
        entry = model_named(model)
        forms = entry.kind.forms
        if form is not None and form not in forms:
            known = ", ".join(forms) or "none; leave form out"
            raise RequestError(400, f"form: {entry.kind.name} results have no form {form!r} (forms: {known})", "form")
        settings = _checked(entry, await _json_object(request))
        count_field = entry.kind.count_field
        count = int(settings.get(count_field) or 1) if count_field else 1
        if entry.kind.name == "text":
            prompts = settings.get("prompt", "")
            count *= len(prompts) if isinstance(prompts, list) else 1
            if int(settings.get("max_new_tokens", entry.kind.sampling.model_fields["max_new_tokens"].default)) > (
                limits.max_tokens
            ):
                raise RequestError(400, f"max_new_tokens: at most {limits.max_tokens} here", "max_new_tokens")
        if count > limits.max_count:
            raise RequestError(400, f"{count_field}: at most {limits.max_count} outputs a request here", count_field)
        result = await run(entry, settings)
        _count_outputs(metrics, entry, result)
        to_json = forms[form] if form is not None else entry.kind.to_json
        body = {"model": entry.name, "kind": entry.kind.name, "result": to_json(result)}
        return JSONResponse({**body, "provenance": dataclasses.asdict(result.provenance)})  # JSON already: sent as is

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    graphs = {
        v2_name: (entry, graph)
        for entry in served.values()
        for graph, v2_name in inference_v2.graph_names(
            entry.name, list(getattr(entry.model, "graph_sessions", {}))
        ).items()
    }

    def graph_named(name: str) -> tuple[ServedModel, Any]:
        if name not in graphs:
            if name in served:
                raise RequestError(
                    400, f"model '{name}' runs in PyTorch, not from an export: it has no graphs", "model"
                )
            raise RequestError(404, f"model '{name}' is not served here; graphs: {', '.join(sorted(graphs))}", "model")
        entry, graph = graphs[name]
        return entry, entry.model.graph_sessions[graph]  # type: ignore[attr-defined]

    @app.get("/v2/models/{model}")
    async def model_metadata(model: str) -> dict[str, Any]:
        if model in served and model not in graphs:
            return {"name": model, "versions": ["1"], "platform": "pytorch", "kind": served[model].kind.name}
        entry, session = graph_named(model)
        return {**inference_v2.metadata(model, session), "kind": entry.kind.name}

    @app.get("/v2/models/{model}/ready")
    async def model_ready(model: str) -> dict[str, Any]:
        if model not in served:
            graph_named(model)
        return {"name": model, "ready": True}

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: inference_v2.InferRequest) -> JSONResponse:
        entry, session = graph_named(model)
        enter_queue()
        try:
            answer = await asyncio.wait_for(
                run_in_threadpool(inference_v2.infer, model, session, request, limits.max_count), limits.timeout_seconds
            )
        except inference_v2.InferError as exc:
            raise RequestError(400, str(exc), exc.param) from None
        except asyncio.TimeoutError:
            raise RequestError(504, f"the request took longer than {limits.timeout_seconds:g} s") from None
        finally:
            leave_queue()
        return JSONResponse(answer)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    return app


class BodyLimit:
    """Counts a request body's bytes as they arrive, so that a chunked body (no content-length to check first)
    stops at the limit too: a 413 from the route that reads it."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise RequestError(413, f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)


async def _guarded(
    request: Request,
    call_next: Callable[[Request], Awaitable[Response]],
    limits: ServerLimits,
    error_response: Callable[[RequestError], JSONResponse],
) -> Response:
    """The API key and the body size, checked before a route runs."""
    path = request.url.path
    if limits.api_key and not path.startswith(OPEN_ROUTES):
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {limits.api_key}".encode()):
            return error_response(RequestError(401, "missing or wrong API key; send 'Authorization: Bearer KEY'"))
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
        return error_response(RequestError(413, f"the body is larger than {limits.max_body_bytes} bytes"))
    return await call_next(request)


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object, or a 400 that says what it is instead."""
    import json

    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(400, "the body is not valid JSON; send a JSON object of sampling settings") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"the body is a JSON {type(body).__name__}, not an object of sampling settings")
    return body


def _checked(entry: ServedModel, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings validated by the kind's sampling model (a 422 naming the field), as JSON values."""
    try:
        checked: dict[str, Any] = validate_model(entry.kind.sampling, settings, what="sampling settings").model_dump(
            exclude_unset=True
        )
    except GenloomError as exc:
        raise RequestError(422, str(exc), _field_of(str(exc))) from None
    return checked


def _field_of(message: str) -> str | None:
    """The field a validation message names (``field 'n': ...``)."""
    marker = "field '"
    start = message.find(marker)
    return message[start + len(marker) : message.find("'", start + len(marker))] if start >= 0 else None


def _graphs_of(model: LoadedModel) -> list[str]:
    """The graphs an export opened, in the export's order (none for a model run in PyTorch)."""
    return list(getattr(model, "graph_sessions", {}))


def _count_outputs(metrics: ServerMetrics, entry: ServedModel, result: Any) -> None:
    """Tokens for text; otherwise the kind's count (images, rows, clips)."""
    if entry.kind.name == "text":
        metrics.generated.labels(entry.name, "tokens").inc(sum(len(ids) for ids in result.tokens))
    elif entry.kind.count_field:
        count = result.provenance.settings.get(entry.kind.count_field, 1)
        metrics.generated.labels(entry.name, entry.kind.name).inc(int(count or 1))
