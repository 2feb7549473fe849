"""The OpenAI ``/v1/completions`` request and response, and how a request becomes genloom's text settings, so that
the official ``openai`` client works against ``genloom serve`` unchanged."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class CompletionRequest(BaseModel):
    """What ``client.completions.create(...)`` sends; fields genloom does not implement are refused by name."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The served model's name (see GET /v1/models).")
    prompt: str | list[str] = Field(description="One prompt, or a list of prompts.")
    max_tokens: int = Field(16, ge=1, description="New tokens at most, per completion.")
    min_tokens: int = Field(
        0, ge=0, description="New tokens at least: end of text is not chosen before (vLLM's extension; extra_body)."
    )
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False, description="0: greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="Nucleus sampling's share.")
    n: int = Field(1, ge=1, description="Completions per prompt.")
    stop: str | list[str] | None = Field(None, description="Stop strings (not included in the text).")
    seed: int | None = Field(None, ge=0, description="The same seed gives the same completion.")
    stream: bool = Field(False, description="Send the text as server-sent events as it is decoded.")
    user: str | None = Field(None, description="Accepted and ignored, as an end-user id.")

    def sampling(self) -> dict[str, Any]:
        """The same request as ``generate(...)`` settings of a text model (validated there, by TextSampling)."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return {
            "prompt": self.prompt,
            "max_new_tokens": self.max_tokens,
            "min_new_tokens": self.min_tokens,
            "do_sample": self.temperature > 0,
            "temperature": self.temperature if self.temperature > 0 else 1.0,
            "top_k": None,
            "top_p": self.top_p,
            "num_return_sequences": self.n,
            "stop": stop or None,
            "seed": self.seed,
        }


class Choice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    """The OpenAI completion object (``object: text_completion``)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def completion(
    name: str, request: CompletionRequest, texts: list[str], tokens: list[list[int]], prompt_tokens: int
) -> Completion:
    """The response to a non-streamed request: one choice per text, in the order genloom made them."""
    choices = [
        Choice(text=text, index=index, finish_reason="length" if len(ids) >= request.max_tokens else "stop")
        for index, (text, ids) in enumerate(zip(texts, tokens, strict=True))
    ]
    completed = sum(len(ids) for ids in tokens)
    return Completion(
        id=completion_id(),
        created=int(time.time()),
        model=name,
        choices=choices,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completed, total_tokens=prompt_tokens + completed),
    )


async def stream_events(
    name: str, request: CompletionRequest, pieces: AsyncIterator[str], encode: Callable[[str], list[int]] | None
) -> AsyncIterator[str]:
    """Server-sent events of one streamed completion: a chunk per piece of text, one with its finish reason
    (``length`` when the text, encoded again with ``encode``, holds ``max_tokens`` tokens), then ``data: [DONE]``."""
    identity, created = completion_id(), int(time.time())

    def event(text: str, finish: Literal["stop", "length"] | None) -> str:
        chunk = Completion(
            id=identity,
            created=created,
            model=name,
            choices=[Choice(text=text, index=0, finish_reason=finish)],
        )
        return f"data: {json.dumps(chunk.model_dump(exclude_none=False))}\n\n"

    text = ""
    async for piece in pieces:
        text += piece
        yield event(piece, None)
    made = len(encode(text)) if encode is not None else 0
    yield event("", "length" if made >= request.max_tokens else "stop")
    yield "data: [DONE]\n\n"
