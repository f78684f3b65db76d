"""Settings of the parser, read from the environment with documented defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _number(env: dict[str, str], name: str, default: float, cast: type = int):
    """`env[name]` as `cast` (int or float), `default` when unset or blank; ValueError naming the variable."""
    raw = env.get(name, "")
    try:
        return cast(raw) if raw.strip() else default
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from None


def _positive(env: dict[str, str], name: str, default: float) -> float:
    """`env[name]` as a number > 0; ValueError naming the variable otherwise."""
    value = _number(env, name, default, float)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number, got {env.get(name)!r}")
    return value


@dataclass(frozen=True)
class ParserSettings:
    """What `python -m data_parsing ingest` needs besides its --source.

    - database_url: DATABASE_URL (None: db_utils' default, `sqlite:///data/recsys.db`)
    - kafka_bootstrap_servers: KAFKA_BOOTSTRAP_SERVERS (unset; a kafka:// source names its broker itself)
    - kafka_topic: KAFKA_TOPIC (`movielog`), used when a kafka:// source names no topic
    - kafka_group_id: KAFKA_GROUP_ID (`movie-recommender`): parsers sharing it share the partitions
    - metrics_port: PARSER_METRICS_PORT (9102); 0 disables the /metrics endpoint
    - batch_size: PARSER_BATCH_SIZE (5000 lines): a batch is one database transaction
    - batch_seconds: PARSER_BATCH_SECONDS (1.0): a partial batch is applied after this long
    - rejected_cap: PARSER_REJECTED_CAP (100): rejected lines stored per reason per hour; all are counted
    - kafka_session_timeout_ms: PARSER_KAFKA_SESSION_TIMEOUT_MS (6000): how soon the group hands a dead
      parser's partitions to the others (lower: faster failover, more spurious rebalances)
    - rejected_max_rows: PARSER_REJECTED_MAX_ROWS (100000): rejected lines kept in the store, newest first
    - quality_window_seconds: PARSER_QUALITY_WINDOW_SECONDS (300): event-time window of the drift statistics
    - quality_min_count: PARSER_QUALITY_MIN_COUNT (200): observations a feature needs in a window to be scored
    """

    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "movielog"
    kafka_group_id: str = "movie-recommender"
    metrics_port: int = 9102
    batch_size: int = 5000
    batch_seconds: float = 1.0
    rejected_cap: int = 100
    kafka_session_timeout_ms: int = 6000
    rejected_max_rows: int = 100_000
    quality_window_seconds: float = 300.0
    quality_min_count: int = 200

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ParserSettings:
        """Read the settings from `env` (default: os.environ); raise ValueError on a malformed number."""
        env = dict(os.environ if env is None else env)
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            kafka_topic=env.get("KAFKA_TOPIC") or "movielog",
            kafka_group_id=env.get("KAFKA_GROUP_ID") or "movie-recommender",
            metrics_port=_number(env, "PARSER_METRICS_PORT", 9102),
            batch_size=max(1, _number(env, "PARSER_BATCH_SIZE", 5000)),
            batch_seconds=max(0.0, _number(env, "PARSER_BATCH_SECONDS", 1.0, float)),
            rejected_cap=max(0, _number(env, "PARSER_REJECTED_CAP", 100)),
            kafka_session_timeout_ms=max(1000, _number(env, "PARSER_KAFKA_SESSION_TIMEOUT_MS", 6000)),
            rejected_max_rows=max(0, _number(env, "PARSER_REJECTED_MAX_ROWS", 100_000)),
            quality_window_seconds=_positive(env, "PARSER_QUALITY_WINDOW_SECONDS", 300.0),
            quality_min_count=max(1, _number(env, "PARSER_QUALITY_MIN_COUNT", 200)),
        )
