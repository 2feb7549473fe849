"""What the benchmarks ran on, and what that machine can do at best (its roofs), measured in the same run."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from importlib import metadata

import numpy as np
from pydantic import BaseModel, Field

from genloom.bench.measure import time_call

MATMUL_SIZE = 1024
BANDWIDTH_BYTES = 256 * 1024 * 1024
IDLE_CHECK_SECONDS = 0.5


class Machine(BaseModel):
    """The machine, its libraries, and its measured roofs: the best library's median over the repeats."""

    cpu: str
    cores: int
    platform: str
    libraries: dict[str, str]
    matmul_gflops: float = Field(
        description="fp32 matrix-multiply GFLOP/s, 1024x1024, at the start: the best of matmul_gflops_by_library "
        "(image rows measure it again for themselves)."
    )
    matmul_gflops_by_library: dict[str, float] = Field(
        description="The same product in numpy, torch and ONNX Runtime (MLAS)."
    )
    read_gbytes_per_second: float = Field(
        description="Memory read bandwidth, GB/s, at the start: the fastest of several ways to read a 256 MiB array "
        "(text rows measure it again for themselves)."
    )
    busy_elsewhere: float | None = Field(
        default=None,
        description=f"Cores' worth of CPU time that other processes (and, on a VM, the "
        f"hypervisor's steal) used during a {IDLE_CHECK_SECONDS} s pause at the start; 0 on a quiet machine. "
        "On a machine this small anything else running slows the threaded rows by large factors. "
        "None where /proc/stat is not there.",
    )


def describe_machine(repeats: int = 5) -> Machine:
    """Describe this machine and measure its matmul and memory-read roofs."""
    busy = busy_elsewhere()
    matmul = _matmul_gflops(repeats)
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 1,
        platform=platform.platform(),
        libraries=_versions(),
        matmul_gflops=max(matmul.values()),
        matmul_gflops_by_library=matmul,
        read_gbytes_per_second=read_bandwidth(repeats),
        busy_elsewhere=busy,
    )


def busy_elsewhere(seconds: float = IDLE_CHECK_SECONDS) -> float | None:
    """Cores' worth of CPU time used by other processes (and stolen by the hypervisor) while this one sleeps
    ``seconds``."""
    try:
        before, own_before = _busy_ticks(), _own_ticks()
        time.sleep(seconds)
        after, own_after = _busy_ticks(), _own_ticks()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, (after - before - (own_after - own_before)) / os.sysconf("SC_CLK_TCK") / seconds)


def _busy_ticks() -> int:
    """All CPUs' busy clock ticks so far: user, nice, system, irq, softirq and steal in /proc/stat's first line."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


def _own_ticks() -> int:
    """This process's user and system clock ticks so far."""
    with open("/proc/self/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


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


def matmul_roof(repeats: int = 5) -> float:
    """fp32 matrix-multiply GFLOP/s now: the best library's."""
    return max(_matmul_gflops(repeats).values())


def _matmul_gflops(repeats: int) -> dict[str, float]:
    """fp32 GFLOP/s of a 1024x1024 matrix product in each library at hand: numpy, torch and ONNX Runtime (MLAS)."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32) for _ in range(2))
    products = {"numpy": lambda: a @ b, "onnxruntime": _onnxruntime_matmul(b, a)}
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        products["torch"] = lambda: ta @ tb
    except ImportError:
        pass
    flops = 2 * MATMUL_SIZE**3
    return {name: flops / time_call(product, repeats=repeats * 4).median / 1e9 for name, product in products.items()}


def _onnxruntime_matmul(weight: np.ndarray, activations: np.ndarray) -> Callable[[], object]:
    """A one-node ONNX graph, ``activations @ weight``, run by ONNX Runtime on the CPU."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(activations.shape))],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [activations.shape[0], weight.shape[1]])],
        [numpy_helper.from_array(weight, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": activations})


def read_bandwidth(repeats: int = 5) -> float:
    """Memory read GB/s now: the fastest of a few ways to read 256 MiB once (numpy's sum and matrix-vector product,
    torch's threaded sum)."""
    array = np.ones(BANDWIDTH_BYTES // 4, np.float32)
    matrix, vector = array.reshape(-1, 4096), np.ones(len(array) // 4096, np.float32)
    readers: dict[str, Callable[[], object]] = {"numpy sum": array.sum, "numpy mat-vec": lambda: vector @ matrix}
    try:
        import torch

        tensor = torch.from_numpy(array)
        readers["torch sum"] = lambda: tensor.sum()
    except ImportError:
        pass
    return max(array.nbytes / time_call(read, repeats=repeats).median / 1e9 for read in readers.values())
