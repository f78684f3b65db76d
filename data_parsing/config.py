"""Settings of the parser, read from the environment with documented defaults (`core.settings`: a bad
value is a startup error naming the variable and the accepted form; nothing is clamped silently)."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import EnvSettings, env


@dataclass(frozen=True)
class ParserSettings(EnvSettings):
    """What `python -m data_parsing ingest` needs besides its --source."""

    database_url: str | None = env("DATABASE_URL", None)
    """SQLAlchemy URL of the store (unset: db_utils' default, `sqlite:///data/recsys.db`)."""
    kafka_bootstrap_servers: str | None = env("KAFKA_BOOTSTRAP_SERVERS", None)
    """The brokers (unset: a kafka:// source names its broker itself)."""
    kafka_topic: str = env("KAFKA_TOPIC", "movielog")
    """The topic, used when a kafka:// source names none."""
    kafka_group_id: str = env("KAFKA_GROUP_ID", "movie-recommender")
    """The consumer group: parsers sharing it share the partitions."""
    metrics_port: int = env("PARSER_METRICS_PORT", 9102, minimum=0, maximum=65535)
    """The parser's /metrics port; 0 disables the endpoint."""
    batch_size: int = env("PARSER_BATCH_SIZE", 5000, minimum=1)
    """Lines per batch: a batch is one database transaction."""
    batch_seconds: float = env("PARSER_BATCH_SECONDS", 1.0, minimum=0.0)
    """A partial batch is applied after this long."""
    rejected_cap: int = env("PARSER_REJECTED_CAP", 100, minimum=0)
    """Rejected lines stored per reason per hour (all are counted)."""
    kafka_session_timeout_ms: int = env("PARSER_KAFKA_SESSION_TIMEOUT_MS", 6000, minimum=1000)
    """How soon the group hands a dead parser's partitions to the others (lower: faster failover, more
    spurious rebalances)."""
    rejected_max_rows: int = env("PARSER_REJECTED_MAX_ROWS", 100_000, minimum=0)
    """Rejected lines kept in the store, newest first."""
    quality_window_seconds: float = env("PARSER_QUALITY_WINDOW_SECONDS", 300.0, minimum=0.001)
    """Event-time window of the drift statistics."""
    quality_min_count: int = env("PARSER_QUALITY_MIN_COUNT", 200, minimum=1)
    """Observations a feature needs in a window to be scored."""
