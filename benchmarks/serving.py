"""`genloom serve` under load: N concurrent clients over the loopback address, beside the same requests served one at
a time and offline batched generation, measured in one run.

    python benchmarks/serving.py [--out runs/serving] [--clients 1 4 16 64] [--memory-requests 10000]

Text: the demo's GPT (``runs/demo/pydoc-gpt`` when the demo has run, else trained here on a short schedule),
exported as a user would (the fused graph), prompts of 8-32 tokens from the pydoc corpus, 64 new tokens,
temperature 0, non-streaming for throughput. For each N: requests/s, tokens/s and p50/p95/p99 latency of
``genloom serve`` (continuous batching) and of ``genloom serve --max-batch 1`` (one request at a time), and tokens/s
of offline ``model.generate`` on a batch of N prompts in this process. At 16 clients: time to the first streamed
token. Then the server's resident memory after a warm-up and after ``--memory-requests`` short requests.

Images (``--images``): the DCGAN-64-shaped generator of ``compare.py`` (random weights), 4 images a request, against
offline batch-64 generation.

Every load loop is bounded in count and time. The server and the load generator share the machine's cores.
Writes ``serving.json`` into ``--out`` and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import genloom
from genloom.fileio import atomic_write_text
from genloom.serve.process import free_port, server_process

sys.path.insert(0, str(Path(__file__).parent))
from compare import dcgan_64, demo_model

NEW_TOKENS = 64
REQUESTS_PER_CLIENT = 8
EVERY_TOKEN = {"min_tokens": NEW_TOKENS}
"""Every request makes its 64 tokens (the demo GPT often ends a text sooner)."""
END_OF_TEXT = "<|endoftext|>"
LEVEL_SECONDS = 120.0
"""A load level stops sending after this, whatever it has left."""


def prompts(model: Any, count: int, seed: int = 0) -> list[str]:
    """``count`` prompts of 8-32 tokens: windows of the pydoc corpus that start at a word."""
    text = genloom.plugins.get_registry().open_data("pydoc").text
    words = text.split()
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    while len(chosen) < count:
        start = int(rng.integers(0, len(words) - 40))
        prompt = " ".join(words[start : start + int(rng.integers(6, 24))])
        if 8 <= len(model.tokenizer.encode(prompt)) <= 32:
            chosen.append(prompt)
    return chosen


@contextmanager
def server(export: Path, *options: str) -> Iterator[tuple[str, int]]:
    """``genloom serve EXPORT`` on a free loopback port (its URL and process id), stopped afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "genloom", "serve", str(export), "--name", "model", "--port", str(port)]
    with server_process([*command, *options, "--queue-size", "1024"], port, stdout=subprocess.DEVNULL) as process:
        yield f"http://127.0.0.1:{port}", process.pid


async def load(url: str, route: str, bodies: list[dict[str, Any]], clients: int, made: str) -> dict[str, Any]:
    """``clients`` concurrent clients sending ``bodies`` in turn (each once), until all are answered or
    ``LEVEL_SECONDS`` pass; what each answer made is read from ``made`` (a completion's tokens, or images)."""
    queue = list(reversed(bodies))
    latencies: list[float] = []
    outputs = 0
    failed = 0
    deadline = time.monotonic() + LEVEL_SECONDS
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal outputs, failed
        while queue and time.monotonic() < deadline:
            body = queue.pop()
            started = time.perf_counter()
            answer = await http.post(route, json=body)
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                failed += 1
                continue
            outputs += answer.json()["usage"]["completion_tokens"] if made == "tokens" else body["n"]

    async with httpx.AsyncClient(base_url=url, timeout=LEVEL_SECONDS, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
    quantiles = np.quantile(latencies, [0.5, 0.95, 0.99]) * 1000 if latencies else [float("nan")] * 3
    return {
        "clients": clients,
        "requests": len(latencies),
        "failed": failed,
        "requests_per_s": len(latencies) / seconds,
        f"{made}_per_s": outputs / seconds,
        "p50_ms": float(quantiles[0]),
        "p95_ms": float(quantiles[1]),
        "p99_ms": float(quantiles[2]),
    }


async def first_token_times(url: str, bodies: list[dict[str, Any]]) -> dict[str, float]:
    """Time to the first streamed piece, with one concurrent stream per body."""
    times: list[float] = []

    async def one(http: httpx.AsyncClient, request: dict[str, Any]) -> None:
        body = {**request, "stream": True}
        started = time.perf_counter()
        first: float | None = None
        async with http.stream("POST", "/v1/completions", json=body) as events:
            async for line in events.aiter_lines():
                if first is None and line.startswith("data: ") and line != "data: [DONE]":
                    first = time.perf_counter() - started
        if first is not None:
            times.append(first)

    async with httpx.AsyncClient(base_url=url, timeout=LEVEL_SECONDS) as http:
        await asyncio.gather(*(one(http, body) for body in bodies))
    p50, p95 = np.quantile(times, [0.5, 0.95]) * 1000
    return {"clients": len(bodies), "ttft_p50_ms": float(p50), "ttft_p95_ms": float(p95)}


def gpt2_folder(trained: Path, out: Path) -> Path:
    """The trained GPT as a Hugging Face GPT-2 folder (the same weights, its tokenizer, no end-of-text stop, so that
    every request makes its 64 tokens): what ``transformers serve`` loads."""
    if (out / "config.json").is_file():
        return out
    import transformers
    from safetensors.numpy import load_file, save_file

    from genloom_text.hf import CONV1D_SUFFIXES

    manifest = json.loads((trained / "manifest.json").read_text())
    config, vocab = manifest["config"], int(manifest["facts"]["vocab_size"])
    weights = load_file(str(trained / "model.safetensors"))
    state = {}
    for key, value in weights.items():
        name = "transformer." + key.removeprefix("model.")
        if name.startswith("transformer.lm_head"):
            continue  # tied to the embedding, as in GPT-2
        state[name] = np.ascontiguousarray(value.T if name.endswith(CONV1D_SUFFIXES) else value)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    gpt2 = transformers.GPT2Config(
        n_layer=config["layers"], n_head=config["heads"], n_embd=config["width"], n_positions=config["context_length"],
        vocab_size=vocab, activation_function="gelu_new", bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    gpt2.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps({"do_sample": False}))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(trained / "tokenizer.json"))
    tokenizer.save_pretrained(out)
    return out


def resident_mib(pid: int) -> float:
    """The process's resident memory (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def offline_text(model: Any, texts: list[str], batch: int, repeats: int = 3) -> float:
    """Tokens/s of ``model.generate`` on ``batch`` prompts at once, the median of ``repeats`` runs."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = model.generate(prompt=texts[:batch], max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        rates.append(sum(len(t) for t in result.tokens) / (time.perf_counter() - started))
    return statistics.median(rates)


def text_benchmark(export: Path, peer: Path | None, levels: list[int], memory_requests: int) -> dict[str, Any]:
    model = genloom.load(export)
    texts = prompts(model, max(levels) * REQUESTS_PER_CLIENT)

    def bodies(clients: int, name: str = "model", prefix: str = "") -> list[dict[str, Any]]:
        body = {"model": name, "max_tokens": NEW_TOKENS, "temperature": 0, **(EVERY_TOKEN if not prefix else {})}
        return [{**body, "prompt": prefix + prompt} for prompt in texts[: clients * REQUESTS_PER_CLIENT]]

    rows: list[dict[str, Any]] = []
    with server(export) as (batched, pid), server(export, "--max-batch", "1") as (serial, _):
        for url in (batched, serial):  # warm up: the first requests of a session pay for its first runs
            asyncio.run(load(url, "/v1/completions", bodies(4), 4, "tokens"))
        for clients in levels:
            row = {"clients": clients}
            row["batched"] = asyncio.run(load(batched, "/v1/completions", bodies(clients), clients, "tokens"))
            row["one_at_a_time"] = asyncio.run(load(serial, "/v1/completions", bodies(clients), clients, "tokens"))
            row["offline_tokens_per_s"] = offline_text(model, texts, clients)
            rows.append(row)
            print(json.dumps(row), flush=True)
        ttft = asyncio.run(first_token_times(batched, bodies(16)[:16]))
        memory = memory_run(batched, pid, texts, memory_requests)
    report: dict[str, Any] = {"levels": rows, "ttft": ttft, "memory": memory}
    if peer is not None:
        report["peer"] = peer_benchmark(peer, levels, lambda clients: bodies(clients, str(peer), END_OF_TEXT))
    return report


def peer_benchmark(folder: Path, levels: list[int], bodies: Callable[[int], list[dict[str, Any]]]) -> dict[str, Any]:
    """``transformers serve --continuous-batching`` on the same model, the same requests (its prompts start with the
    end-of-text token that genloom's server puts before each prompt; the folder has no end-of-text stop, so every
    request makes its 64 tokens, as genloom's do with ``min_tokens``)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(folder), "--continuous-batching",
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning"]  # fmt: skip
    started = time.perf_counter()
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with server_process(command, port, ready_within=300, ready_path="/health", env=environment,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:  # fmt: skip
        ready_seconds = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}"
        asyncio.run(load(url, "/v1/completions", bodies(1), 1, "tokens"))  # its first request loads the model
        rows = []
        for clients in levels:
            row = asyncio.run(load(url, "/v1/completions", bodies(clients), clients, "tokens"))
            rows.append(row)
            print(json.dumps({"peer": row}), flush=True)
        ttft = asyncio.run(first_token_times(url, bodies(16)[:16]))
        memory = resident_mib(process.pid)
    return {"levels": rows, "ttft": ttft, "ready_seconds": ready_seconds, "resident_mib": memory}


def memory_run(url: str, pid: int, texts: list[str], requests: int) -> dict[str, Any]:
    """The server's resident memory after 1,000 short requests (16 clients) and after ``requests`` more."""
    body = {"model": "model", "max_tokens": 8, "temperature": 0}
    short = [{**body, "prompt": texts[i % len(texts)]} for i in range(1000)]
    asyncio.run(load(url, "/v1/completions", short, 16, "tokens"))
    warm = resident_mib(pid)
    many = [{**short[i % len(short)], "seed": i} for i in range(requests)]
    answered = asyncio.run(load(url, "/v1/completions", many, 16, "tokens"))
    after = resident_mib(pid)
    return {"requests": answered["requests"], "failed": answered["failed"], "warm_mib": warm, "after_mib": after}


def image_benchmark(export: Path, clients: int) -> dict[str, Any]:
    model = genloom.load(export)
    offline = []
    for _ in range(3):
        started = time.perf_counter()
        model.generate(n=64, seed=0)
        offline.append(64 / (time.perf_counter() - started))
    bodies = [{"n": 4, "seed": i} for i in range(clients * 8)]
    with server(export) as (url, _):
        served = asyncio.run(load(url, "/v1/generate/model?form=png", bodies, clients, "images"))
    return {"served": served, "offline_batch64_images_per_s": statistics.median(offline)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/serving"))
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--memory-requests", type=int, default=10_000)
    parser.add_argument("--images", action="store_true", help="also the DCGAN-64-shaped image generator")
    parser.add_argument("--no-peer", action="store_true", help="leave out transformers serve")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trained = demo_model(args.demo, args.out, "gpt", "pydoc", 200)
    export = args.out / "pydoc-gpt-onnx"
    if not (export / "manifest.json").is_file():
        genloom.plugins.get_registry().exporter("onnx").value.export(trained, export)
    peer = None if args.no_peer else gpt2_folder(trained, args.out / "pydoc-gpt-hf")
    report: dict[str, Any] = {"text": text_benchmark(export, peer, args.clients, args.memory_requests)}
    if args.images:
        images = args.out / "dcgan-64-onnx"
        if not (images / "manifest.json").is_file():
            genloom.plugins.get_registry().exporter("onnx").value.export(dcgan_64(args.out), images)
        report["images"] = image_benchmark(images, 16)
    atomic_write_text(args.out / "serving.json", json.dumps(report, indent=2))
    print_tables(report)


def print_tables(report: dict[str, Any]) -> None:
    text = report["text"]
    peers = {row["clients"]: row for row in text.get("peer", {}).get("levels", [])}
    columns = [
        "clients",
        "genloom serve tok/s",
        "req/s",
        "p50 / p95 / p99 ms",
        "one at a time tok/s",
        "offline batch-N tok/s",
        "transformers serve tok/s",
        "x one at a time",
        "x offline",
        "x transformers serve",
    ]
    print("\n| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in text["levels"]:
        batched, serial, peer = row["batched"], row["one_at_a_time"], peers.get(row["clients"])
        peer_rate = f"{peer['tokens_per_s']:,.0f}" if peer else "-"
        versus_peer = f"{batched['tokens_per_s'] / peer['tokens_per_s']:.2f}" if peer else "-"
        print(
            f"| {row['clients']} | {batched['tokens_per_s']:,.0f} | {batched['requests_per_s']:.1f} "
            f"| {batched['p50_ms']:.0f} / {batched['p95_ms']:.0f} / {batched['p99_ms']:.0f} "
            f"| {serial['tokens_per_s']:,.0f} | {row['offline_tokens_per_s']:,.0f} | {peer_rate} "
            f"| {batched['tokens_per_s'] / serial['tokens_per_s']:.2f} "
            f"| {batched['tokens_per_s'] / row['offline_tokens_per_s']:.2f} | {versus_peer} |"
        )
    failed = sum(row["batched"]["failed"] + row["one_at_a_time"]["failed"] for row in text["levels"])
    print(f"\nfailed requests: {failed} (transformers serve: {sum(r['failed'] for r in peers.values())})")
    print(f"time to first token, 16 streams: {json.dumps(text['ttft'])}")
    if "peer" in text:
        print(f"transformers serve: {json.dumps({k: v for k, v in text['peer'].items() if k != 'levels'})}")
    print(f"memory: {json.dumps(text['memory'])}")
    if "images" in report:
        images = report["images"]
        ratio = images["served"]["images_per_s"] / images["offline_batch64_images_per_s"]
        print(f"images, 16 clients x 4: {images['served']['images_per_s']:.1f}/s; offline batch 64: "
              f"{images['offline_batch64_images_per_s']:.1f}/s; ratio {ratio:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
