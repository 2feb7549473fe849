"""`genloom serve` as apps meet it: a real server process on a free loopback port, the official `openai` client
(streaming included) and httpx, the results of `model.generate(...)` exactly, bad requests as 4xx JSON naming the
field, an API key, metrics, and a client that leaves mid-stream without holding the model."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import genloom
from genloom.errors import GenloomError
from genloom.plugins import get_registry
from genloom.sampling import TextSampling
from genloom.serve.batching import OneShotBatcher, OneShotTicket, TextBatcher, TextTicket
from genloom.serve.process import free_port, server_process
from tests.conftest import cli_in_process

KEY = "test-key"
TINY_GPT = {"width": 32, "layers": 1, "heads": 2, "context_length": 64, "batch_size": 4, "vocab_size": 300}

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serving")
    corpus = root / "docs.txt"
    corpus.write_text(get_registry().open_data("pydoc").text[:20_000], encoding="utf-8")
    genloom.train("gpt", f"text:{corpus}", root / "gpt", progress=False, steps=20, eval_every=0, **TINY_GPT)
    genloom.train("gan", "digits", root / "gan", progress=False, steps=2, width=8, latent_dim=8, sample_every=0)
    lstm = {"width": 16, "layers": 1, "batch_size": 4, "vocab_size": 300, "context_length": 16}
    genloom.train("lstm", f"text:{corpus}", root / "lstm", progress=False, steps=2, eval_every=0, **lstm)
    for name in ("gpt", "gan", "lstm"):
        result = cli_in_process("export", str(root / name), "--out", str(root / f"{name}-onnx"))
        assert result.returncode == 0, result.stderr
    return {"gpt": root / "gpt-onnx", "gan": root / "gan-onnx", "lstm": root / "lstm-onnx"}


@pytest.fixture(scope="module")
def server(exports: dict[str, Path]) -> Iterator[str]:
    """`genloom serve` in its own process on 127.0.0.1 where torch cannot be imported (the runtime install), stopped
    (SIGTERM, then killed) after the module."""
    port = free_port()
    without_torch = "import sys; sys.modules['torch'] = None; from genloom.cli import main; main()"  # as installed
    command = [sys.executable, "-c", without_torch, "serve", str(exports["gpt"]), str(exports["gan"]),
               "--name", "gpt", "--name", "gan", "--port", str(port), "--api-key", KEY,
               "--max-body-bytes", "20000", "--max-count", "8"]  # fmt: skip
    with server_process(command, port, ready_within=90, stdout=subprocess.DEVNULL):
        yield f"http://127.0.0.1:{port}"


def client(server: str) -> httpx.Client:
    return httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


@pytest.mark.timeout(180)
def test_the_openai_client_completes_and_streams_what_generate_makes(server: str, exports: dict[str, Path]) -> None:
    local = genloom.load(exports["gpt"])
    api = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    made = api.completions.create(model="gpt", prompt="The", max_tokens=12, temperature=0)
    expected = local.generate(prompt="The", max_new_tokens=12)
    assert made.choices[0].text == expected.texts[0] and made.object == "text_completion"
    assert made.usage is not None and made.usage.completion_tokens == len(expected.tokens[0])
    streamed = api.completions.create(model="gpt", prompt="The", max_tokens=12, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == expected.texts[0]
    batch = api.completions.create(model="gpt", prompt=["A", "The list"], max_tokens=6, temperature=0.8, n=2, seed=4)
    settings = {"prompt": ["A", "The list"], "max_new_tokens": 6, "do_sample": True, "temperature": 0.8}
    again = local.generate(**settings, top_k=None, num_return_sequences=2, seed=4)
    assert [choice.text for choice in batch.choices] == again.texts and len(again.texts) == 4


@pytest.mark.timeout(120)
def test_generate_serves_every_kind_with_its_settings_and_provenance(server: str, exports: dict[str, Path]) -> None:
    with client(server) as http:
        answer = http.post("/v1/generate/gan", json={"n": 3, "seed": 5})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        expected = genloom.load(exports["gan"]).generate(n=3, seed=5).array
        assert np.abs(np.array(body["result"]["array"]) - expected).max() < 1e-6
        assert body["kind"] == "image" and body["provenance"]["seed"] == 5
        pngs = http.post("/v1/generate/gan?form=png", json={"n": 3, "seed": 5}).json()["result"]["png"]
        decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(png)))) for png in pngs]
        assert np.abs(np.stack(decoded)[..., None] / 255 - expected).max() <= 0.5 / 255 + 1e-6  # 8 bits a channel
        text = http.post("/v1/generate/gpt", json={"prompt": "The", "max_new_tokens": 4}).json()
        assert text["result"]["texts"] == genloom.load(exports["gpt"]).generate(prompt="The", max_new_tokens=4).texts
        listed = http.get("/v1/models").json()["data"]
        assert {(entry["id"], entry["kind"]) for entry in listed} == {("gpt", "text"), ("gan", "image")}
        metadata = http.get("/v2/models/gpt").json()
        assert metadata["inputs"][0]["name"] == "input_ids" and metadata["platform"] == "onnxruntime_onnx"
        assert http.get("/v2/models/gan/ready").json() == {"name": "gan", "ready": True}


@pytest.mark.timeout(120)
def test_the_v2_infer_route_runs_an_export_graph_as_kserve_and_triton_clients_call_it(
    server: str, exports: dict[str, Path]
) -> None:
    local = genloom.load(exports["gan"])
    with client(server) as http:
        metadata = http.get("/v2/models/gan").json()
        assert metadata["inputs"] == [{"name": "latents", "datatype": "FP32", "shape": [-1, local.latent_dim]}]
        latents = np.random.default_rng(11).standard_normal((2, local.latent_dim), dtype=np.float32)
        request = {"id": "r1", "inputs": [{"name": "latents", "shape": [2, local.latent_dim], "datatype": "FP32",
                                           "data": latents.ravel().tolist()}]}  # fmt: skip
        answer = http.post("/v2/models/gan/infer", json=request)
        assert answer.status_code == 200, answer.text
        (images,) = answer.json()["outputs"]
        assert images["name"] == "images" and images["datatype"] == "FP32" and images["shape"][0] == 2
        expected = local.generate(n=2, seed=11).array.transpose(0, 3, 1, 2)  # the same latents, drawn alike
        assert np.abs(np.array(images["data"]).reshape(images["shape"]) - expected).max() < 1e-6
        assert answer.json()["id"] == "r1"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("route", "body", "status", "fragment", "param"),
    [
        ("/v1/completions", b"{not json", 400, "not a JSON object", None),
        ("/v1/completions", {"model": "gpt", "prompt": "a", "max_tokens": "many"}, 422, "max_tokens", "max_tokens"),
        ("/v1/completions", {"model": "nope", "prompt": "a"}, 404, "not served here", "model"),
        ("/v1/completions", {"model": "gpt", "prompt": "a", "logit_bias": {}}, 422, "logit_bias", "logit_bias"),
        ("/v1/completions", {"model": "gan", "prompt": "a"}, 400, "makes image, not text", "model"),
        ("/v1/completions", {"model": "gpt", "prompt": "a", "n": 9}, 400, "at most 8", "n"),
        ("/v1/generate/gan", {"n": 0}, 422, "field 'n'", "n"),
        ("/v1/generate/gan", {"n": 9}, 400, "at most 8", "n"),
        ("/v1/generate/gan", {"n": "many"}, 422, "field 'n'", "n"),
        ("/v1/generate/gpt", {"prompt": ["a"] * 5, "num_return_sequences": 2}, 400, "at most 8", None),
        ("/v1/completions", {"model": "gpt", "prompt": "a " * 80, "stream": True}, 400, "context holds 64", None),
        ("/v1/generate/gan", {"size": 3}, 422, "unknown field 'size'", None),
        ("/v1/generate/gan?form=jpeg", {"n": 1}, 400, "no form 'jpeg' (forms: png)", "form"),
        (
            "/v2/models/gan/infer",
            {"inputs": [{"name": "latents", "shape": [1, 8], "datatype": "INT64", "data": [0] * 8}]},
            400,
            "takes FP32, not INT64",
            "inputs",
        ),
        (
            "/v2/models/gan/infer",
            {"inputs": [{"name": "latents", "shape": [2, 8], "datatype": "FP32", "data": [0.0] * 8}]},
            400,
            "holds 16 values, but data has 8",
            "inputs",
        ),
        (
            "/v2/models/gan/infer",
            {"inputs": [{"name": "noise", "shape": [1], "datatype": "FP32", "data": [0.0]}]},
            400,
            "no input 'noise'",
            "inputs",
        ),
        (
            "/v2/models/gan/infer",
            {"inputs": [{"name": "latents", "shape": [1, 3], "datatype": "FP32", "data": [0.0] * 3}]},
            400,
            "has shape [-1, 8], not [1, 3]",
            "inputs",
        ),
        (
            "/v2/models/gan/infer",
            {"inputs": [{"name": "latents", "shape": [1, 8], "datatype": "FP32", "data": [True] + [0.0] * 7}]},
            400,
            "takes finite numbers that fit FP32",
            "inputs",
        ),
        (
            "/v2/models/gan/infer",
            {"inputs": [{"name": "latents", "shape": [9, 8], "datatype": "FP32", "data": [0.0] * 72}]},
            400,
            "9 rows, at most 8 a request here",
            "inputs",
        ),
        (
            "/v2/models/nope/infer",
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.0]}]},
            404,
            "not served here",
            "model",
        ),
        ("/v1/generate/gan", [1, 2], 400, "not an object", None),
        ("/v1/generate/gan", {"labels": "x" * 30_000}, 413, "larger than 20000 bytes", None),
    ],
)
def test_bad_requests_are_4xx_json_that_name_the_field(
    server: str, route: str, body: object, status: int, fragment: str, param: str | None
) -> None:
    with client(server) as http:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = http.post(route, content=content, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert fragment in error["message"] and (param is None or error["param"] == param), error


@pytest.mark.timeout(60)
def test_a_chunked_body_over_the_limit_is_413(server: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"n": 1, "labels": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}'

    with client(server) as http:
        for route in ("/v1/generate/gan", "/v1/completions", "/v2/models/gan/infer"):  # read by hand, and by FastAPI
            answer = http.post(route, content=chunks(), headers={"content-type": "application/json"})
            assert answer.status_code == 413 and "larger than 20000 bytes" in answer.json()["error"]["message"], route


@pytest.mark.timeout(120)
def test_the_api_key_guards_the_models_but_not_health_or_metrics(server: str) -> None:
    refused = httpx.post(f"{server}/v1/generate/gan", json={"n": 1}, timeout=30)
    assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]
    assert httpx.get(f"{server}/v2/health/live", timeout=30).json() == {"live": True}
    with client(server) as http:
        http.post("/v1/generate/gan", json={"n": 2, "seed": 1})
    scraped = httpx.get(f"{server}/metrics", timeout=30).text
    assert 'genloom_requests_total{route="/v1/generate/{model}",status="200"}' in scraped
    assert 'genloom_generated_total{model="gan",unit="image"}' in scraped and "genloom_queue_depth" in scraped


@pytest.mark.timeout(120)
def test_a_client_that_leaves_mid_stream_frees_the_model(server: str) -> None:
    with client(server) as http:
        request = {"model": "gpt", "prompt": "The", "max_tokens": 40, "stream": True}
        with http.stream("POST", "/v1/completions", json=request) as events:
            first = next(events.iter_lines())
            assert first.startswith("data: ")
        answer = http.post("/v1/completions", json={"model": "gpt", "prompt": "The", "max_tokens": 4}, timeout=30)
        assert answer.status_code == 200 and answer.json()["choices"][0]["text"] is not None


@pytest.mark.timeout(180)
def test_concurrent_requests_decode_together_and_each_gets_what_it_gets_alone(
    server: str, exports: dict[str, Path]
) -> None:
    local = genloom.load(exports["gpt"])
    requests = [
        {
            "prompt": ["The", "A list of", "x = 1"][i % 3],
            "max_new_tokens": 8 + 3 * i,
            "do_sample": i % 2 == 1,
            "seed": i,
        }
        for i in range(12)
    ]
    scrape = lambda: httpx.get(f"{server}/metrics", timeout=30).text  # noqa: E731
    steps_before = _batch_runs(scrape(), "gpt")
    with client(server) as http, ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda body: http.post("/v1/generate/gpt", json=body), requests))
    assert [answer.status_code for answer in answers] == [200] * len(requests)
    for body, answer in zip(requests, answers, strict=True):
        assert answer.json()["result"]["texts"] == local.generate(**body).texts, body
    single, total = (after - before for after, before in zip(_batch_runs(scrape(), "gpt"), steps_before, strict=True))
    assert total > 0 and single < total  # some steps decoded several requests' sequences at once


@pytest.mark.timeout(120)
def test_concurrent_image_requests_run_in_one_batch_and_each_gets_its_own_images(
    server: str, exports: dict[str, Path]
) -> None:
    local = genloom.load(exports["gan"])
    with client(server) as http, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda seed: http.post("/v1/generate/gan", json={"n": 3, "seed": seed}), range(8)))
    for seed, answer in enumerate(answers):
        assert answer.status_code == 200, answer.text
        expected = local.generate(n=3, seed=seed).array
        assert np.abs(np.array(answer.json()["result"]["array"]) - expected).max() < 1e-6
    scraped = httpx.get(f"{server}/metrics", timeout=30).text
    up_to_three, runs = _batch_runs(scraped, "gan", bucket="4.0")
    assert runs > 0 and up_to_three < runs  # some runs made the images of several requests


def _batch_runs(metrics: str, model: str, bucket: str = "1.0") -> tuple[float, float]:
    """Runs of at most ``bucket`` rows, and of any number, from ``model``'s ``genloom_batch_size`` histogram."""
    lines = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("genloom_batch_size_"))
    small = float(lines[f'genloom_batch_size_bucket{{le="{bucket}",model="{model}"}}'])
    return small, float(lines[f'genloom_batch_size_count{{model="{model}"}}'])


@pytest.mark.timeout(120)
def test_the_text_batcher_keeps_its_batch_size_and_lets_a_cancelled_or_failed_request_go(
    exports: dict[str, Path],
) -> None:
    model = genloom.load(exports["gpt"])
    sizes: list[int] = []
    batcher = TextBatcher(model, max_batch=3, on_batch=sizes.append)
    ended: dict[int, threading.Event] = {i: threading.Event() for i in range(6)}
    errors: dict[int, BaseException | None] = {}

    def on_end(index: int) -> Callable[[BaseException | None], None]:
        return lambda error: (errors.__setitem__(index, error), ended[index].set())

    settings = [TextSampling(prompt="The", max_new_tokens=10 + i, do_sample=True, seed=i) for i in range(5)]
    settings.append(TextSampling(prompt="word " * 80))  # longer than the context: its own error only
    tickets = [TextTicket(s, on_end(i)) for i, s in enumerate(settings)]
    tickets[1].on_step = lambda made: tickets[1].cancel() if made >= 3 else None
    try:
        for ticket in tickets:
            batcher.submit(ticket)
        assert all(event.wait(60) for event in ended.values())
    finally:
        batcher.close()
    assert isinstance(errors[5], GenloomError) and "context holds 64" in str(errors[5])
    assert [errors[i] for i in range(5)] == [None] * 5
    for i in (0, 2, 3, 4):
        assert tickets[i].tokens == model.generate(**settings[i].model_dump()).tokens
    assert 3 <= len(tickets[1].tokens[0]) < 11  # it left the batch when cancelled
    assert max(sizes) == 3 and not batcher.thread.is_alive()


@pytest.mark.timeout(60)
def test_the_micro_batcher_fills_batches_up_to_its_rows_and_skips_a_cancelled_request(exports: dict[str, Path]) -> None:
    model = genloom.load(exports["gan"])
    sizes: list[int] = []
    batcher = OneShotBatcher(model, max_batch=4, max_wait=0.5, on_batch=sizes.append)
    ended = {i: threading.Event() for i in range(4)}
    results: dict[int, tuple[object, BaseException | None]] = {}

    def on_end(index: int) -> Callable[[object, BaseException | None], None]:
        return lambda result, error: (results.__setitem__(index, (result, error)), ended[index].set())

    counts = [3, 2, 1, 2]
    tickets = [OneShotTicket(model.prepare(n=n, seed=i), on_end(i)) for i, n in enumerate(counts)]
    tickets[1].cancel()
    try:
        for ticket in tickets:
            batcher.submit(ticket)
        assert all(event.wait(30) for event in ended.values())
    finally:
        batcher.close()
    assert sizes == [4, 2] and results[1] == (None, None)  # 3 + 1 fill the first run; the cancelled one never ran
    for i in (0, 2, 3):
        result, error = results[i]
        assert error is None and np.abs(result.array - model.generate(n=counts[i], seed=i).array).max() < 1e-6


LONG = {"model": "lstm", "prompt": "The", "max_tokens": 20_000, "min_tokens": 20_000, "temperature": 0}
"""A request that keeps the LSTM (no context limit) busy for seconds: 20,000 tokens, one at a time."""


@contextmanager
def lstm_server(exports: dict[str, Path], *options: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    command = [sys.executable, "-m", "genloom", "serve", str(exports["lstm"]), "--name", "lstm", "--port", str(port),
               "--max-tokens", "20000"]  # fmt: skip
    with server_process([*command, *options], port, ready_within=90, stdout=subprocess.DEVNULL, text=True) as process:
        yield f"http://127.0.0.1:{port}", process


def wait_for_depth(url: str, depth: int) -> None:
    """Until the server says ``depth`` requests are waiting for or holding a model (at most 30 s)."""
    deadline = time.monotonic() + 30
    while f"genloom_queue_depth {float(depth)}" not in httpx.get(f"{url}/metrics", timeout=10).text:
        assert time.monotonic() < deadline, f"the queue never held {depth}"
        time.sleep(0.01)


@pytest.mark.timeout(120)
def test_a_full_queue_answers_503_with_retry_after_and_a_slow_request_504(exports: dict[str, Path]) -> None:
    with (
        lstm_server(exports, "--queue-size", "1", "--timeout-seconds", "0.3") as (url, _),
        ThreadPoolExecutor(1) as pool,
    ):
        first = pool.submit(httpx.post, f"{url}/v1/completions", json=LONG, timeout=60)
        wait_for_depth(url, 1)
        refused = httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 2}, timeout=30)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
        assert "busy" in refused.json()["error"]["message"]
        assert first.result().status_code == 504 and "longer than 0.3 s" in first.result().json()["error"]["message"]
        after = httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 3, "min_tokens": 3}, timeout=30)
        assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 3  # the slot came back


@pytest.mark.timeout(120)
def test_a_client_that_leaves_mid_stream_frees_its_batch_row(exports: dict[str, Path]) -> None:
    with lstm_server(exports) as (url, _):
        with httpx.stream("POST", f"{url}/v1/completions", json={**LONG, "stream": True}, timeout=60) as events:
            assert next(events.iter_lines()).startswith("data: ")
        wait_for_depth(url, 0)
        time.sleep(0.2)  # the batcher's next step lets the stream's row go
        before = _batch_runs(httpx.get(f"{url}/metrics", timeout=10).text, "lstm")[1]
        time.sleep(0.5)
        after = _batch_runs(httpx.get(f"{url}/metrics", timeout=10).text, "lstm")[1]
        assert after == before  # no step ran for a stream nobody reads: 20,000 tokens would take seconds


@pytest.mark.timeout(120)
def test_sigterm_drains_the_requests_in_flight_then_exits(exports: dict[str, Path]) -> None:
    with lstm_server(exports) as (url, process), ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, f"{url}/v1/completions", json=LONG, timeout=60)
        wait_for_depth(url, 1)
        process.send_signal(signal.SIGTERM)
        answer = running.result()
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 20_000
        assert process.wait(timeout=30) == -signal.SIGTERM  # uvicorn re-raises the signal once it has drained
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/v2/health/live", timeout=5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_serve_runs_the_same_app_on_two_replicas(exports: dict[str, Path]) -> None:
    pytest.importorskip("ray.serve")
    with tempfile.TemporaryDirectory(prefix="genloom-ray-") as ray_dir:  # short: Ray's socket paths must fit 107 bytes
        check_ray_serve(exports, Path(ray_dir))


def check_ray_serve(exports: dict[str, Path], ray_dir: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "genloom", "serve", str(exports["gpt"]), str(exports["gan"]), "--name", "gpt",
               "--name", "gan", "--port", str(port), "--ray", "--replicas", "2"]  # fmt: skip
    environment = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_dir)}
    with server_process(command, port, ready_within=180, stdout=subprocess.PIPE, text=True, env=environment) as process:
        assert process.stdout is not None
        assert "on Ray Serve, 2 replicas running" in process.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        local = genloom.load(exports["gan"])
        with httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda seed: http.post("/v1/generate/gan", json={"n": 2, "seed": seed}), range(8)))
            completion = http.post(
                "/v1/completions", json={"model": "gpt", "prompt": "The", "max_tokens": 6, "temperature": 0}
            )
        for seed, answer in enumerate(answers):
            assert answer.status_code == 200, answer.text
            assert (
                np.abs(np.array(answer.json()["result"]["array"]) - local.generate(n=2, seed=seed).array).max() < 1e-6
            )
        expected = genloom.load(exports["gpt"]).generate(prompt="The", max_new_tokens=6).texts[0]
        assert completion.status_code == 200 and completion.json()["choices"][0]["text"] == expected
        process.terminate()
        assert process.wait(timeout=90) == 0  # Serve and Ray shut down with it


def test_bad_serve_commands_are_one_line(tmp_path: Path, exports: dict[str, Path]) -> None:
    from tests.conftest import assert_one_line_error

    missing = cli_in_process("serve", str(tmp_path / "missing"))
    assert_one_line_error(missing, "is not a genloom model")
    lonely = cli_in_process("serve", str(exports["gan"]), "--replicas", "2")
    assert_one_line_error(lonely, "--replicas: only with --ray")
    twice = cli_in_process("serve", str(exports["gan"]), str(exports["gan"]))
    assert_one_line_error(twice, "--name: 'gan-onnx' names two models", "different --name")
