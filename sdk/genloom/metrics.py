"""The training log: ``metrics.jsonl`` (one JSON object per logged step) and its loss plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genloom.fileio import atomic_path, atomic_write_text

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


class MetricsLog:
    """Appends ``{"step": N, name: value, ...}`` lines, flushed as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, step: int, values: dict[str, float]) -> None:
        """Record ``values`` at ``step``."""
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every record, in order (a torn last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (work after the last checkpoint, redone on resume)."""
        kept = [r for r in self.read() if r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def plot(self, target: Path) -> Path:
        """Write a PNG with one curve per logged figure against the step."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series: dict[str, tuple[list[int], list[float]]] = {}
        for record in self.read():
            for name, value in record.items():
                if name != "step":
                    steps, values = series.setdefault(name, ([], []))
                    steps.append(record["step"])
                    values.append(value)
        figure, axes = plt.subplots(figsize=(8, 4.5))
        for name, (steps, values) in sorted(series.items()):
            axes.plot(steps, values, label=name, marker="o" if name.startswith("eval/") else None)
        axes.set_xlabel("step")
        axes.set_ylabel("value")
        axes.grid(alpha=0.3)
        if series:
            axes.legend()
        with atomic_path(target) as tmp:
            figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        return target
