"""What the benchmarks ran on, and what that machine can do at best (its roofs), measured in the same run."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import numpy as np
from pydantic import BaseModel, Field

from genloom.bench.measure import time_call

MATMUL_SIZE = 1024
BANDWIDTH_BYTES = 256 * 1024 * 1024


class Machine(BaseModel):
    """The machine, its libraries, and its measured roofs."""

    cpu: str
    cores: int
    platform: str
    libraries: dict[str, str]
    matmul_gflops: float = Field(description="fp32 matrix-multiply GFLOP/s, best of numpy and torch, 1024x1024.")
    read_gbytes_per_second: float = Field(description="Memory read bandwidth, GB/s: the fastest of several ways to read a 256 MiB array.")


def describe_machine(repeats: int = 5) -> Machine:
    """Describe this machine and measure its matmul and memory-read roofs."""
    return Machine(cpu=_cpu_model(), cores=os.cpu_count() or 1, platform=platform.platform(), libraries=_versions(),
                   matmul_gflops=_matmul_gflops(repeats), read_gbytes_per_second=_read_bandwidth(repeats))


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("genloom", "torch", "onnxruntime-gpu", "onnxruntime", "numpy", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _matmul_gflops(repeats: int) -> float:
    rng = np.random.default_rng(0)
    a, b = (rng.random((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32) for _ in range(2))
    flops = 2 * MATMUL_SIZE**3
    best = flops / time_call(lambda: a @ b, repeats=repeats * 4).median
    try:
        import torch
    except ImportError:
        return best / 1e9
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return max(best, flops / time_call(lambda: ta @ tb, repeats=repeats * 4).median) / 1e9


def _read_bandwidth(repeats: int) -> float:
    """The fastest of a few ways to read 256 MiB once: numpy's sum and matrix-vector product, torch's threaded sum."""
    array = np.ones(BANDWIDTH_BYTES // 4, np.float32)
    matrix, vector = array.reshape(-1, 4096), np.ones(len(array) // 4096, np.float32)
    readers = [array.sum, lambda: vector @ matrix]
    try:
        import torch

        tensor = torch.from_numpy(array)
        readers.append(lambda: tensor.sum())
    except ImportError:
        pass
    return max(array.nbytes / time_call(read, repeats=repeats).median / 1e9 for read in readers)
