"""What ``GET /metrics`` reports, in the Prometheus text format (``prometheus_client``), one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ServerMetrics:
    """Requests by route and status, latency by route, outputs made by model and unit, and requests waiting."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "genloom_requests", "Requests answered, by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "genloom_request_seconds",
            "Seconds from a request's arrival to its answer (to the end of the stream), by route",
            ["route"],
            registry=self.registry,
        )
        self.generated = Counter(
            "genloom_generated",
            "What the models made, by model and unit (tokens, images, rows, clips, ...)",
            ["model", "unit"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "genloom_batch_size",
            "Rows of each batched run, by model: sequences in a decoder step, images in a graph run",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.waiting = Gauge("genloom_queue_depth", "Requests waiting for or holding a model", registry=self.registry)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
