"""Where and in what precision training steps run: ``--device auto|cpu|cuda`` and the config's ``precision``.

``fp32`` runs as written. ``bf16`` runs each training step under ``torch.autocast`` with bfloat16 (CPU and
CUDA). ``fp16`` runs it under float16 autocast with a ``torch.amp.GradScaler`` (CUDA only): the loss is scaled
before backward, gradients are unscaled before the optimizer steps, and a step whose gradients overflowed is
skipped. A generator takes part through :meth:`genloom.Generator.backward`, :meth:`~genloom.Generator.step` and
:meth:`~genloom.Generator.unscale_gradients`, which are plain ``loss.backward()`` and ``optimizer.step()`` in
the other precisions. Weights, checkpoints and artifacts stay float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from genloom.errors import ConfigError

if TYPE_CHECKING:
    import torch

PrecisionName = Literal["fp32", "bf16", "fp16"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(choice: str) -> torch.device:
    """The device of ``--device``: ``auto`` is CUDA where torch sees a GPU, else the CPU."""
    import torch

    if choice not in DEVICE_CHOICES:
        raise ConfigError(f"--device {choice!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA GPU here; use --device cpu (or auto)")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in (fp16 on the CPU) before the run starts."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            "field 'precision': fp16 trains on CUDA only (it needs a GPU's loss scaling); use precision=bf16 on "
            "the CPU, or --device cuda"
        )


def unscaled_backward_error(generator: str) -> ConfigError:
    """The error for a train step that ran backward itself under fp16, so its loss could not be scaled."""
    return ConfigError(
        f"field 'precision': {generator} calls loss.backward() itself, so fp16 cannot scale its loss; train it "
        "with precision=bf16 or fp32 (its train_step must call self.backward(loss) and self.step(optimizer) for fp16)"
    )


class Precision:
    """The autocast and loss scaling of one training run on ``device_type`` (``"cpu"`` or ``"cuda"``)."""

    def __init__(self, name: PrecisionName, device_type: str) -> None:
        import torch

        self.name = name
        self.device_type = device_type
        self.scaler = torch.amp.GradScaler(device_type) if name == "fp16" else None
        self.backward_calls = 0
        self.skipped_steps = 0
        """Optimizer steps that fp16 loss scaling skipped (their gradients overflowed), this step."""
        self._unscaled: set[int] = set()

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The context one training step runs in."""
        import torch

        self.backward_calls = self.skipped_steps = 0
        if self.name == "fp32":
            yield
            return
        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        with torch.autocast(self.device_type, dtype=dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, the loss scaled first under fp16."""
        self.backward_calls += 1
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()  # type: ignore[no-untyped-call]

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the scale out of ``optimizer``'s gradients (fp16), so they can be clipped or read."""
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; under fp16, skipped when the gradients overflowed, and the scale updated."""
        if self.scaler is None:
            optimizer.step()
            return
        if not self.backward_calls:
            raise unscaled_backward_error("this generator")
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        self._unscaled.discard(id(optimizer))
        if self.scaler.get_scale() < scale:  # the scale shrinks exactly when the step was skipped
            self.skipped_steps += 1

    def state_dict(self) -> dict[str, Any] | None:
        """The loss scaler's state (JSON), for checkpoints; None without one."""
        if self.scaler is None:
            return None
        return dict(self.scaler.state_dict())

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Put a checkpoint's loss scaler state back (nothing to do without a scaler)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
