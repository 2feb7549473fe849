"""A model as the server holds it, and how a request reaches it: its batcher (continuous batching for text,
micro-batching for one-shot kinds) or a worker thread under its lock; the futures and queues that carry results and
streamed pieces back to the event loop. Knows nothing of routes."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from genloom.config import validate_model
from genloom.errors import GenloomError
from genloom.model import LoadedModel
from genloom.results import TextResult
from genloom.sampling import TextSampling
from genloom.serve.batching import OneShotBatcher, OneShotModel, OneShotTicket, TextBatcher, TextTicket
from genloom.serve.limits import ServerLimits
from genloom.serve.metrics import ServerMetrics
from genloom.serve.openai_api import CompletionRequest, stream_events
from genloom.textgen import TextModel, TextPieces, check_streamable, decoded


class RequestError(HTTPException):
    """A request the server refuses: its status, message and the field it names. An HTTPException, so that FastAPI
    lets it through unchanged even from inside its own reading of a body (the body limit)."""

    def __init__(self, status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.status, self.message, self.param = status, message, param


@dataclasses.dataclass
class ServedModel:
    """A loaded model under its served name, run by its ``batcher``: continuous batching for a text model whose
    sessions join (every text export), micro-batching for a one-shot model that prepares requests (image exports);
    any other runs one request at a time under its ``lock``."""

    name: str
    model: LoadedModel
    kind: Any
    batcher: TextBatcher | OneShotBatcher | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def batcher_for(
    name: str, model: LoadedModel, kind: Any, limits: ServerLimits, metrics: ServerMetrics
) -> TextBatcher | OneShotBatcher | None:
    """The batcher that runs ``model``'s requests together, or None for a model that runs one at a time."""
    observe = metrics.batch_size.labels(name).observe
    if callable(getattr(model, "prepare", None)) and callable(getattr(model, "run_batch", None)):
        return OneShotBatcher(cast(OneShotModel, model), limits.max_batch_images, limits.max_wait_ms / 1000, observe)
    session = getattr(model, "session", None)
    if kind.name == "text" and session is not None and callable(getattr(session(), "absorb", None)):
        return TextBatcher(cast(TextModel, model), limits.max_batch, observe)
    return None


async def batched_text(
    entry: ServedModel, batcher: TextBatcher, settings: dict[str, Any], timeout: float
) -> TextResult:
    """A text request decoded in ``batcher``'s batch; a timeout makes it leave the batch (its rows are freed)."""
    request = validate_model(TextSampling, settings, what="sampling settings")
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[BaseException | None] = loop.create_future()
    ticket = batcher.submit(TextTicket(request, lambda error: loop.call_soon_threadsafe(_settle, ended, error)))
    error = await _awaited(ended, ticket, timeout)
    if error is not None:
        raise error
    texts = decoded(batcher.model, request, ticket.tokens)
    return TextResult(texts.texts, texts.tokens, entry.model.provenance(request.seed, request.model_dump()))


async def batched_one_shot(
    entry: ServedModel, batcher: OneShotBatcher, settings: dict[str, Any], timeout: float
) -> Any:
    """A one-shot request run in ``batcher``'s next batch; a timeout before that batch starts takes it out."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[tuple[Any, BaseException | None]] = loop.create_future()
    part = cast(OneShotModel, entry.model).prepare(**settings)
    ticket = batcher.submit(OneShotTicket(part, lambda *end: loop.call_soon_threadsafe(_settle, ended, end)))
    result, error = await _awaited(ended, ticket, timeout)
    if error is not None:
        raise error
    return result


async def _awaited(ended: asyncio.Future[Any], ticket: TextTicket | OneShotTicket, timeout: float) -> Any:
    """What ``ended`` is set to; past ``timeout``, or when the request's task is cancelled (a server shutting down),
    the ticket is cancelled too and the error raised."""
    try:
        return await asyncio.wait_for(asyncio.shield(ended), timeout)
    except BaseException:
        ticket.cancel()
        raise


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


async def batched_pieces(
    entry: ServedModel, batcher: TextBatcher, settings: dict[str, Any], metrics: ServerMetrics
) -> AsyncGenerator[str, None]:
    """One streamed sequence's text from ``batcher``'s batch, piece by piece; it leaves the batch when the stream
    ends early (a client that went away).

    The batcher's steps are not queued one by one: each wakes the stream, which then reads all the tokens made so
    far. So a stream that sends slower than the model decodes does not fall behind, and it reaches an await
    (where a departed client's cancellation lands) at every piece."""
    request = validate_model(TextSampling, settings, what="sampling settings")
    check_streamable(request)
    loop = asyncio.get_running_loop()
    progress = asyncio.Event()
    ended: list[BaseException | None] = []

    def end(error: BaseException | None) -> None:
        ended.append(error)
        progress.set()

    def stepped(made: int) -> None:
        if not progress.is_set():  # read from the batcher's thread: at worst one wake-up too many
            loop.call_soon_threadsafe(progress.set)

    ticket = TextTicket(request, on_end=lambda error: loop.call_soon_threadsafe(end, error), on_step=stepped)
    batcher.submit(ticket)
    cutter = TextPieces(batcher.model, request)
    made = 0
    try:
        while True:
            await progress.wait()
            progress.clear()
            finished = bool(ended)
            made = len(ticket.sequences[0].generated) if ticket.sequences else 0  # a prefix no later step changes
            if made and (piece := cutter.feed(ticket.sequences[0].generated[:made])):
                yield piece
            if finished:
                break
            await asyncio.sleep(0)
        if ended[0] is not None:
            raise ended[0]
        if last := cutter.end():
            yield last
    finally:
        ticket.cancel()
        metrics.generated.labels(entry.name, "tokens").inc(made)


async def locked_pieces(
    entry: ServedModel, settings: dict[str, Any], metrics: ServerMetrics
) -> AsyncGenerator[str, None]:
    """One streamed sequence's text from a worker thread that holds the model while it decodes; when the stream
    ends early, the worker stops at the next piece and lets the model go."""
    loop = asyncio.get_running_loop()
    handed: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
    leaving = threading.Event()

    def decode() -> None:
        try:
            with entry.lock:
                for piece in entry.model.stream(**settings):
                    if leaving.is_set():
                        break
                    metrics.generated.labels(entry.name, "tokens").inc()
                    loop.call_soon_threadsafe(handed.put_nowait, piece)
        except Exception as exc:  # noqa: BLE001 - handed to the stream, which raises it
            loop.call_soon_threadsafe(handed.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(handed.put_nowait, None)

    loop.run_in_executor(None, decode)  # it ends by itself, at its last piece or the first after the stream ended
    try:
        while isinstance(item := await handed.get(), str):
            yield item
            await asyncio.sleep(0)  # an await that suspends, where a departed client's cancellation lands
        if item is not None:
            raise item
    finally:
        leaving.set()


async def streamed(
    entry: ServedModel, request: CompletionRequest, source: AsyncGenerator[str, None], done: Callable[[], None]
) -> StreamingResponse:
    """The streamed completion's response over ``source``'s pieces. A bad request (a prompt longer than the
    context) is a 400 before the stream starts; ``done`` runs once, however the stream ends."""
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            done()

    try:
        first = await anext(source)
    except StopAsyncIteration:
        first = None
    except GenloomError as exc:
        release()
        raise RequestError(400, str(exc)) from None
    except BaseException:
        release()
        raise

    async def pieces() -> AsyncIterator[str]:
        if first is None:
            return
        yield first
        async for piece in source:
            yield piece

    async def events() -> AsyncIterator[str]:
        tokenizer = getattr(entry.model, "tokenizer", None)
        try:
            async for event in stream_events(entry.name, request, pieces(), tokenizer.encode if tokenizer else None):
                yield event
        finally:
            await source.aclose()
            release()

    return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(release))
