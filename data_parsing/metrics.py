"""The parser's Prometheus metrics (names are a contract: dashboards and alerts use exactly these)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from data_parsing.parser import REASONS
from data_parsing.quality import FEATURES

EVENTS = Counter("parser_events", "Events applied to the store, by kind", ["kind"])
REJECTED = Counter("parser_rejected", "Lines rejected by the parser, by reason", ["reason"])
BATCH_SECONDS = Histogram(
    "parser_batch_seconds",
    "Time to apply one batch in one database transaction",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONSUMER_LAG = Gauge("parser_consumer_lag", "Messages not yet consumed, summed over assigned partitions")
LAST_APPLIED = Gauge("parser_last_applied_timestamp_seconds", "Unix time when the last batch committed")
UP = Gauge("parser_up", "1 while the parser runs")
DRIFT = Gauge(
    "stream_drift_score",
    "Drift of the last closed event-time window from the reference window, by feature (PSI; line_rate: "
    "|log10 of the rate ratio|); over 0.25 is strong drift (data_parsing/quality.py)",
    ["feature"],
)
WINDOW_END = Gauge("stream_window_end_timestamp_seconds", "Event-time end of the last scored stream window")

for _kind in ("watch", "rate", "recommendation"):
    EVENTS.labels(kind=_kind)
for _reason in REASONS:
    REJECTED.labels(reason=_reason)
for _feature in FEATURES:  # NaN until a window scores it: unknown, never "no drift"
    DRIFT.labels(feature=_feature).set(float("nan"))


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on `port` (0: do not serve) and set parser_up; raise OSError if the port is taken."""
    UP.set(1)
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)
