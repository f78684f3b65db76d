"""Prometheus metrics of the service, with exactly the names of the project's metric contract.

prometheus-flask-exporter serves /metrics (aggregating every gunicorn worker's samples under
PROMETHEUS_MULTIPROC_DIR), with its default metrics off. The per-request HTTP metrics keep the exporter's
names, labels and buckets (`flask_http_request_duration_seconds` labelled method/path/status, where path
is the route template so user ids never become labels, and `flask_http_request_total` labelled
method/status) but are recorded by `HttpMetrics` from the app's own after-request hook, with each label
combination's children bound once: the exporter's hook, which looks its labels up anew on every request,
cost about a tenth of a cached recommendation (docs/benchmarks.md). /metrics itself is not counted, as
with the exporter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    """The PROMETHEUS_MULTIPROC_DIR when it is set and exists, else None."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


def path(req: Request) -> str:
    """The route template ('/recommend/<user_id>'), so the path label stays bounded."""
    return req.url_rule.rule if req.url_rule is not None else "<unmatched>"


class HttpMetrics:
    """flask_http_request_duration_seconds and flask_http_request_total, with bound children per
    (method, route template, status); at most `max_bound` combinations are kept bound (odd methods from
    callers are still counted, only looked up each time)."""

    def __init__(self, registry: CollectorRegistry, max_bound: int = 256) -> None:
        self.duration = Histogram("flask_http_request_duration_seconds", "Flask HTTP request duration in seconds",
                                  ["method", "path", "status"], buckets=LATENCY_BUCKETS, registry=registry)
        self.total = Counter("flask_http_request_total", "Total number of HTTP requests", ["method", "status"],
                             registry=registry)
        self.max_bound = max_bound
        self._bound: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        key = (method, route, status)
        pair = self._bound.get(key)
        if pair is None:
            pair = (self.duration.labels(method, route, str(status)), self.total.labels(method, str(status)))
            if len(self._bound) < self.max_bound:
                self._bound[key] = pair
        pair[0].observe(max(seconds, 0.0))
        pair[1].inc()


@dataclass
class ServiceMetrics:
    """The custom metrics, registered in one registry per app (tests build many apps)."""

    registry: CollectorRegistry
    latency: Histogram
    fallback: Counter
    cold_start: Counter
    requests: Counter
    cache_hits: Counter
    cache_misses: Counter
    ready: Gauge
    http: HttpMetrics
    answers: Counter | None = None
    cache_bytes: Gauge | None = None
    """neighbour_cache_bytes: the estimated bytes of the neighbour cache in use (set after each fetch)."""
    by_kind: dict[str, Counter] = field(default_factory=dict)
    """recommend_requests_total's child per kind, bound once (`labels()` per request costs a lock and a
    tuple lookup)."""
    by_arm: dict[tuple[str | None, str], Counter] = field(default_factory=dict)
    """recommend_answers_total's child per (arm, model version), bound once."""

    def count_answer(self, arm: str | None, version: str) -> None:
        """Count one answer by experiment arm (control, treatment; none outside an experiment) and the
        version that gave it. Arm names other than control and treatment count as treatment, so the
        label stays bounded whatever the store holds."""
        child = self.by_arm.get((arm, version))
        if child is None:
            label = "none" if arm is None else arm if arm in ("control", "treatment") else "treatment"
            assert self.answers is not None
            child = self.by_arm[(arm, version)] = self.answers.labels(arm=label, model_version=version)
        child.inc()

    def count_request(self, kind: str) -> None:
        """Count one recommendation request of this kind."""
        child = self.by_kind.get(kind)
        if child is None:
            child = self.by_kind[kind] = self.requests.labels(kind=kind)
        child.inc()

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ServiceMetrics:
        return cls(
            registry=registry,
            latency=Histogram("recommend_latency_seconds", "Time to handle one recommendation",
                              buckets=LATENCY_BUCKETS, registry=registry),
            fallback=Counter("recommend_fallback_total",
                             "Answers served from the in-memory popular list because a dependency failed",
                             ["reason"], registry=registry),
            cold_start=Counter("recommend_cold_start_total", "Recommendations for users with no history",
                               registry=registry),
            requests=Counter("recommend_requests_total", "Recommendation requests by kind", ["kind"],
                             registry=registry),
            cache_hits=Counter("neighbour_cache_hits_total", "Neighbour lists found in the cache",
                               registry=registry),
            cache_misses=Counter("neighbour_cache_misses_total", "Neighbour lists fetched from the vectors",
                                 registry=registry),
            cache_bytes=Gauge("neighbour_cache_bytes", "Estimated bytes held by the neighbour cache of the "
                              "model in use (summed over live workers)", registry=registry,
                              multiprocess_mode="livesum"),
            ready=Gauge("recommender_ready", "1 when the store, vectors and caches are usable",
                        registry=registry, multiprocess_mode="livemin"),
            http=HttpMetrics(registry),
            answers=Counter("recommend_answers_total", "Answers by experiment arm (control, treatment, none) "
                            "and the model version that gave them", ["arm", "model_version"], registry=registry),
        )


def init_metrics(app: Flask) -> ServiceMetrics:
    """Attach the exporter (multiprocess-aware) and the custom metrics to the app; /metrics serves them."""
    registry = CollectorRegistry()
    options = {"registry": registry, "export_defaults": False}
    if multiprocess_dir():
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        exporter: PrometheusMetrics = GunicornInternalPrometheusMetrics(app, **options)
    else:
        exporter = PrometheusMetrics(app, **options)
    app.extensions["prometheus_exporter"] = exporter
    metrics = ServiceMetrics.create(registry)
    for kind in ("personalized", "cold_start", "fallback", "invalid"):
        metrics.by_kind[kind] = metrics.requests.labels(kind=kind)
    for reason in ("sql", "vectors", "timeout", "error"):
        metrics.fallback.labels(reason=reason)
    return metrics
