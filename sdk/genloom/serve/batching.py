"""Continuous batching for text: one thread per model decodes every request together, one batched decoder step per
token. A request joins at the next step and leaves when its sequences stop, without waiting for the others; each
sequence gets its own budget, random stream and settings, so its tokens are the ones it gets alone.

The thread calls back (``on_step`` after every step a request is in, ``on_end`` once when it is done); the server
turns those into its event loop's futures and queues. Nothing here knows HTTP.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from genloom.sampling import TextSampling
from genloom.textgen import DecodingBatch, Sequence, TextModel


@dataclass
class TextTicket:
    """One request in the batcher: its settings, its sequences once joined, and its callbacks."""

    settings: TextSampling
    on_end: Callable[[BaseException | None], object]
    on_step: Callable[[list[list[int]]], object] | None = None
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


class TextBatcher:
    """Decodes the text requests of one model together, on a thread of its own, at most ``max_batch`` rows at a
    time (a request with more rows than that runs alone). ``on_batch`` hears each step's batch size."""

    def __init__(self, model: TextModel, max_batch: int, on_batch: Callable[[int], None] | None = None) -> None:
        self.model, self.max_batch, self.on_batch = model, max_batch, on_batch
        self.batch = DecodingBatch(model)
        self.waiting: deque[TextTicket] = deque()
        self.live: list[TextTicket] = []
        self.wakeup = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._run, name="genloom-text-batcher", daemon=True)
        self.thread.start()

    def submit(self, ticket: TextTicket) -> TextTicket:
        """Queue ``ticket``; it joins the batch at the next step that has room for it."""
        with self.wakeup:
            if self.closing:
                raise RuntimeError("the batcher is closed")
            self.waiting.append(ticket)
            self.wakeup.notify()
        return ticket

    def close(self) -> None:
        """Finish the requests already in, then stop the thread."""
        with self.wakeup:
            self.closing = True
            self.wakeup.notify()
        self.thread.join()

    def _run(self) -> None:
        while True:
            with self.wakeup:
                while not (self.waiting or self.live or self.closing):
                    self.wakeup.wait()
                if self.closing and not (self.waiting or self.live):
                    return
                joining = self._admitted()
            for ticket in joining:
                self._join(ticket)
            self._drop_cancelled()
            if self.batch.rows:
                self._step()

    def _admitted(self) -> list[TextTicket]:
        """The waiting tickets that fit in the batch now, in their order (the first one always, into an empty
        batch)."""
        room = self.max_batch - len(self.batch.rows)
        admitted: list[TextTicket] = []
        while self.waiting and (self.waiting[0].rows <= room or not (self.batch.rows or admitted)):
            ticket = self.waiting.popleft()
            room -= ticket.rows
            admitted.append(ticket)
        return admitted

    def _join(self, ticket: TextTicket) -> None:
        if ticket.cancelled:
            ticket.on_end(None)
            return
        try:
            ticket.sequences = self.batch.join(ticket.settings)
        except Exception as exc:  # noqa: BLE001 - the request's own error (a prompt too long), handed back to it
            ticket.on_end(exc)
            return
        self.live.append(ticket)
        self._report([ticket])

    def _drop_cancelled(self) -> None:
        gone = [ticket for ticket in self.live if ticket.cancelled]
        if not gone:
            return
        leaving = {id(s) for ticket in gone for s in ticket.sequences}
        self.batch.keep([s for s in self.batch.rows if id(s) not in leaving])
        self.live = [ticket for ticket in self.live if not ticket.cancelled]
        for ticket in gone:
            ticket.on_end(None)

    def _step(self) -> None:
        if self.on_batch is not None:
            self.on_batch(len(self.batch.rows))
        try:
            self.batch.step()
        except Exception as exc:  # noqa: BLE001 - a failing step fails every request in it, and the batch starts anew
            for ticket in self.live:
                ticket.on_end(exc)
            self.live = []
            self.batch = DecodingBatch(self.model)
            return
        self._report(self.live)

    def _report(self, tickets: list[TextTicket]) -> None:
        """Each ticket's tokens after a step; the finished ones leave ``live`` and hear their end."""
        for ticket in tickets:
            if ticket.on_step is not None:
                ticket.on_step(ticket.tokens)
        finished = [ticket for ticket in tickets if all(s.finished for s in ticket.sequences)]
        for ticket in finished:
            self.live.remove(ticket)
            ticket.on_end(None)
