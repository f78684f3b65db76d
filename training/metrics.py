"""The trainer's Prometheus metrics, served on TRAIN_METRICS_PORT while it runs on a schedule."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass
class TrainerMetrics:
    """trainer_cycles_total{status}, trainer_cycle_seconds, trainer_last_success_timestamp_seconds,
    trainer_active_version (the active version's number), trainer_gate_hit_rate{model}."""

    cycles: Counter
    seconds: Histogram
    last_success: Gauge
    active: Gauge
    hit_rate: Gauge
    registry: CollectorRegistry

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> TrainerMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            Counter("trainer_cycles_total", "Training cycles by outcome (active, rejected, unchanged, failed).",
                    ["status"], registry=registry),
            Histogram("trainer_cycle_seconds", "Wall time of a training cycle.",
                      buckets=(10, 30, 60, 120, 300, 600, 1200, 3600), registry=registry),
            Gauge("trainer_last_success_timestamp_seconds", "When a cycle last ended without error.",
                  registry=registry),
            Gauge("trainer_active_version", "The number of the active model version (0: none).", registry=registry),
            Gauge("trainer_gate_hit_rate", "The last gate's hit rate at 20 by model (candidate, active, "
                  "most_popular).", ["model"], registry=registry),
            registry,
        )

    @classmethod
    def start(cls, port: int) -> TrainerMetrics:
        """Metrics served on `port` (0: kept in memory only)."""
        metrics = cls.create()
        if port:
            start_http_server(port, registry=metrics.registry)
        return metrics

    def cycle(self, doc: dict[str, Any], seconds: float) -> None:
        """Record a finished cycle's `training run` document."""
        status = "unchanged" if doc.get("unchanged") else str(doc.get("status"))
        self.cycles.labels(status=status).inc()
        self.seconds.observe(seconds)
        self.last_success.set(time.time())
        if status == "active":
            self.active.set(int(str(doc["version"]).removeprefix("v")))
        for model in ("candidate", "active", "most_popular"):
            figures = (doc.get("gate") or {}).get(model)
            if figures:
                self.hit_rate.labels(model=model).set(figures["hit_rate_at_20"])

    def failed(self, seconds: float) -> None:
        self.cycles.labels(status="failed").inc()
        self.seconds.observe(seconds)
