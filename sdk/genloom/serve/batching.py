"""Batching inside the server, on one thread per model.

Text: continuous batching. Every request is decoded together, one batched decoder step per token; a request joins
at the next step and leaves when its sequences stop, without waiting for the others; each sequence gets its own
budget, random stream and settings, so its tokens are the ones it gets alone.

One-shot kinds (images): micro-batching. Requests that arrive within ``max_wait`` of the first, up to
``max_batch`` rows, run through the graph at once, and each gets its own rows of the outputs back.

The threads call back (``on_step`` after every step a text request is in, ``on_end`` once when a request is done);
the server turns those into its event loop's futures and queues. Nothing here knows HTTP.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from genloom.runtime.base import BatchPart
from genloom.sampling import TextSampling
from genloom.textgen import DecodingBatch, Sequence, TextModel


@dataclass(eq=False)
class TextTicket:
    """One request in the batcher: its settings, its sequences once joined, and its callbacks: ``on_step(made)``
    after each step it is in (``made``: the tokens its first sequence holds then, a prefix of ``sequences[0].
    generated`` that no later step changes), ``on_end(error)`` once, when it is done, cancelled or failed."""

    settings: TextSampling
    on_end: Callable[[BaseException | None], object]
    on_step: Callable[[int], object] | None = None
    sequences: list[Sequence] = field(default_factory=list)
    cancelled: bool = False

    @property
    def rows(self) -> int:
        """The batch rows it takes: its prompts times its sequences per prompt."""
        return len(self.settings.prompts) * self.settings.num_return_sequences

    @property
    def tokens(self) -> list[list[int]]:
        """Each sequence's generated tokens (all of them once ``on_end`` has run without an error)."""
        return [list(s.generated) for s in self.sequences]

    def cancel(self) -> None:
        """Leave the batch at the next step (a client that went away, a request past its timeout)."""
        self.cancelled = True


TicketT = TypeVar("TicketT")


class BatcherThread(Generic[TicketT]):
    """A queue of tickets and the thread that takes them in batches (``_run``, a subclass's); ``close`` lets the
    tickets already queued finish, then stops the thread."""

    def __init__(self, max_batch: int, on_batch: Callable[[int], None] | None, name: str) -> None:
        self.max_batch, self.on_batch = max_batch, on_batch
        self.waiting: deque[TicketT] = deque()
        self.wakeup = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def submit(self, ticket: TicketT) -> TicketT:
        """Queue ``ticket`` for the next batch that has room for it."""
        with self.wakeup:
            if self.closing:
                raise RuntimeError("the batcher is closed")
            self.waiting.append(ticket)
            self.wakeup.notify()
        return ticket

    def close(self) -> None:
        """Finish the requests already queued, then stop the thread."""
        with self.wakeup:
            self.closing = True
            self.wakeup.notify()
        self.thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class TextBatcher(BatcherThread[TextTicket]):
    """Decodes the text requests of one model together, on a thread of its own, at most ``max_batch`` rows at a
    time (a request with more rows than that runs alone). ``on_batch`` hears each step's batch size."""

    def __init__(self, model: TextModel, max_batch: int, on_batch: Callable[[int], None] | None = None) -> None:
        super().__init__(max_batch, on_batch, "genloom-text-batcher")
        self.model = model
        self.batch = DecodingBatch(model)
        self.live: list[TextTicket] = []
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.wakeup:
                while not (self.waiting or self.live or self.closing):
                    self.wakeup.wait()
                if self.closing and not (self.waiting or self.live):
                    return
                joining = self._admitted()
            try:
                self._join(joining)
                self._drop_cancelled()
                if self.batch.rows:
                    self._step()
            except Exception as exc:  # noqa: BLE001 - a failing prefill, step or compaction fails every request in it
                for ticket in self.live:
                    ticket.on_end(exc)
                self.live = []
                self.batch = DecodingBatch(self.model)

    def _admitted(self) -> list[TextTicket]:
        """The waiting tickets that fit in the batch now, in their order (the first one always, into an empty
        batch); cancelled ones are let go."""
        room = self.max_batch - len(self.batch.rows)
        admitted: list[TextTicket] = []
        while self.waiting:
            ticket = self.waiting[0]
            if ticket.cancelled:
                self.waiting.popleft().on_end(None)
                continue
            if ticket.rows > room and (self.batch.rows or admitted):
                break
            admitted.append(self.waiting.popleft())
            room -= ticket.rows
        return admitted

    def _join(self, tickets: list[TextTicket]) -> None:
        """The tickets' prompts run in one session that joins the batch; a ticket whose request the model cannot
        take (a prompt too long) hears its error alone."""
        if not tickets:
            return
        self.live += tickets  # from here a failure reaches them too
        outcomes = self.batch.join_all([ticket.settings for ticket in tickets])
        joined = []
        for ticket, outcome in zip(tickets, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self.live.remove(ticket)
                ticket.on_end(outcome)
                continue
            ticket.sequences = outcome
            joined.append(ticket)
        self._report(joined)

    def _drop_cancelled(self) -> None:
        gone = [ticket for ticket in self.live if ticket.cancelled]  # read once: a cancel may come at any moment
        if not gone:
            return
        leaving = {id(s) for ticket in gone for s in ticket.sequences}
        self.batch.keep([s for s in self.batch.rows if id(s) not in leaving])
        self.live = [ticket for ticket in self.live if ticket not in gone]
        for ticket in gone:
            ticket.on_end(None)

    def _step(self) -> None:
        if self.on_batch is not None:
            self.on_batch(len(self.batch.rows))
        self.batch.step()
        self._report(self.live)

    def _report(self, tickets: list[TextTicket]) -> None:
        """Each ticket's tokens after a step; the finished ones leave ``live`` and hear their end."""
        for ticket in tickets:
            if ticket.on_step is not None:
                ticket.on_step(len(ticket.sequences[0].generated))
        finished = [ticket for ticket in tickets if all(s.finished for s in ticket.sequences)]
        for ticket in finished:
            self.live.remove(ticket)
            ticket.on_end(None)


class OneShotModel(Protocol):
    """A model whose requests can run in one batch: ``prepare`` a request, ``run_batch`` the joined parts."""

    def prepare(self, **settings: Any) -> BatchPart: ...

    def run_batch(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(eq=False)
class OneShotTicket:
    """One request in a one-shot batcher: its part, and ``on_end(result, error)``, called once."""

    part: BatchPart
    on_end: Callable[[Any, BaseException | None], object]
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False

    def cancel(self) -> None:
        """Leave the queue, if the batch it would run in has not started."""
        self.cancelled = True


class OneShotBatcher(BatcherThread[OneShotTicket]):
    """Runs the requests of one one-shot model in batches: those that arrive within ``max_wait`` seconds of the
    first waiting one, up to ``max_batch`` rows (a request with more rows runs alone). ``on_batch`` hears each
    run's rows."""

    def __init__(
        self, model: OneShotModel, max_batch: int, max_wait: float, on_batch: Callable[[int], None] | None = None
    ) -> None:
        super().__init__(max_batch, on_batch, "genloom-micro-batcher")
        self.model, self.max_wait = model, max_wait
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.wakeup:
                while not (self.waiting or self.closing):
                    self.wakeup.wait()
                if self.closing and not self.waiting:
                    return
                deadline = self.waiting[0].arrived + self.max_wait
                while not self.closing and self._rows() < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self.wakeup.wait(left)
                batch = self._taken()
            if batch:
                self._run_batch(batch)

    def _rows(self) -> int:
        return sum(ticket.part.rows for ticket in self.waiting if not ticket.cancelled)

    def _taken(self) -> list[OneShotTicket]:
        """The waiting tickets that fit in one batch, in their order (the first always); cancelled ones are let go."""
        taken: list[OneShotTicket] = []
        rows = 0
        while self.waiting:
            ticket = self.waiting[0]
            if ticket.cancelled:
                self.waiting.popleft().on_end(None, None)
                continue
            if taken and rows + ticket.part.rows > self.max_batch:
                break
            taken.append(self.waiting.popleft())
            rows += ticket.part.rows
        return taken

    def _run_batch(self, batch: list[OneShotTicket]) -> None:
        rows = [ticket.part.rows for ticket in batch]
        if self.on_batch is not None:
            self.on_batch(sum(rows))
        try:
            names = batch[0].part.feeds
            outputs = self.model.run_batch(
                {name: np.concatenate([t.part.feeds[name] for t in batch]) for name in names}
            )
        except Exception as exc:  # noqa: BLE001 - a failing run fails every request in it
            for ticket in batch:
                ticket.on_end(None, exc)
            return
        ends = np.cumsum(rows)
        for ticket, end, count in zip(batch, ends.tolist(), rows, strict=True):
            try:
                result = ticket.part.finish({name: output[end - count : end] for name, output in outputs.items()})
            except Exception as exc:  # noqa: BLE001 - the request's own error, handed back to it
                ticket.on_end(None, exc)
                continue
            ticket.on_end(result, None)
