"""What a request to ``genloom serve`` may ask for: the server's limits, one pydantic model that the CLI's options
are made from. Imports nothing of the server, so that the CLI reads it without the ``serve`` extra."""

from __future__ import annotations

from pydantic import Field

from genloom.config import StrictModel


class ServerLimits(StrictModel):
    """What one request may ask for, and how many may wait."""

    api_key: str | None = Field(None, description="Require 'Authorization: Bearer KEY' on /v1 and /v2/models routes.")
    max_body_bytes: int = Field(1_000_000, ge=1, description="Largest request body.")
    max_tokens: int = Field(2048, ge=1, description="New tokens one completion may ask for.")
    max_count: int = Field(64, ge=1, description="Completions, images, rows or clips one request may ask for.")
    max_batch: int = Field(
        16,
        ge=1,
        description="Sequences a text model decodes together (1: one request at a time). More suit a GPU; on a CPU a "
        "step's time grows with them, and the batch's latency with it.",
    )
    max_batch_images: int = Field(
        64, ge=1, description="Images (or rows) one batched run of a one-shot model makes (1: one request at a time)."
    )
    max_wait_ms: float = Field(
        5.0, ge=0, description="How long a batch of images waits for more requests after its first one arrives."
    )
    queue_size: int = Field(64, ge=1, description="Requests waiting for or holding a model, in all; more get 503.")
    timeout_seconds: float = Field(300.0, gt=0, description="A request still waiting or running after this gets 504.")
