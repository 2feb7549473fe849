"""A ``genloom serve`` process for scripts and tests: started on a free loopback port, waited for until it is ready,
stopped (SIGTERM, then killed) however the block ends. Standard library only."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server_process(
    command: Sequence[str],
    port: int,
    ready_within: float = 120.0,
    ready_path: str = "/v2/health/ready",
    **popen: Any,
) -> Iterator[subprocess.Popen[Any]]:
    """Run ``command`` (a server on 127.0.0.1:``port``) until ``GET ready_path`` answers 200, then yield it; a
    RuntimeError if it exits or is not ready within ``ready_within`` seconds. Stopped with SIGTERM (killed after
    30 s) when the block ends."""
    process = subprocess.Popen(list(command), **popen)
    try:
        deadline = time.monotonic() + ready_within
        while not _ready(port, ready_path):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready in {ready_within:g} s")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _ready(port: int, path: str) -> bool:
    """Whether the server on 127.0.0.1:``port`` answers ``GET path`` with 200: a direct loopback connection, which
    no proxy setting can send elsewhere."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
