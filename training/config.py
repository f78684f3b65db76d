"""Settings of the training role, read once from the environment, with documented defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _number(env: Mapping[str, str], name: str, default: Any, kind: type, minimum: float | None = None,
            maximum: float | None = None) -> Any:
    """A number from the environment, or a ValueError naming the variable and the accepted form."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        form = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {form}, got {raw!r}.") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {raw!r}.")
    return value


def parse_interval(text: str) -> float:
    """Seconds of an interval such as 90s, 30m, 6h or 1d (a bare number is seconds)."""
    raw = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not an interval; use a number with s, m, h or d, such as 6h.") from None
    if seconds <= 0:
        raise ValueError(f"{text!r} is not an interval; it must be positive.")
    return seconds


@dataclass(frozen=True)
class TrainingSettings:
    """What one training cycle does; every field has an environment variable and a default."""

    keep_versions: int = 3
    """TRAIN_KEEP_VERSIONS: versions whose collections are kept (the active one always is); older
    collections are deleted, their rows stay for the record."""
    holdout_fraction: float = 0.2
    """TRAIN_HOLDOUT_FRACTION: share of each user's most recent distinct movies the gate holds out."""
    min_movies: int = 2
    """TRAIN_MIN_MOVIES: users with fewer distinct movies are not scored by the gate."""
    eval_users: int = 2000
    """TRAIN_EVAL_USERS: the gate scores a seeded sample of at most this many users."""
    tolerance: float = 0.01
    """TRAIN_TOLERANCE: how far (absolute hit rate at 20) a candidate may fall below the active version."""
    seed: int = 0
    """TRAIN_SEED: seeds the gate's user sample."""
    collab_prefix: str = "movies_cf"
    """CHROMA_COLLAB_COLLECTION: prefix of the per-version collaborative collections (`<prefix>_v<N>`)."""
    metrics_port: int = 9104
    """TRAIN_METRICS_PORT: the trainer's /metrics port while it runs on a schedule (0: none)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrainingSettings:
        env = os.environ if env is None else env
        return cls(
            keep_versions=_number(env, "TRAIN_KEEP_VERSIONS", cls.keep_versions, int, 1),
            holdout_fraction=_number(env, "TRAIN_HOLDOUT_FRACTION", cls.holdout_fraction, float, 0.01, 0.99),
            min_movies=_number(env, "TRAIN_MIN_MOVIES", cls.min_movies, int, 2),
            eval_users=_number(env, "TRAIN_EVAL_USERS", cls.eval_users, int, 1),
            tolerance=_number(env, "TRAIN_TOLERANCE", cls.tolerance, float, 0.0, 1.0),
            seed=_number(env, "TRAIN_SEED", cls.seed, int, 0),
            collab_prefix=env.get("CHROMA_COLLAB_COLLECTION", "").strip() or cls.collab_prefix,
            metrics_port=_number(env, "TRAIN_METRICS_PORT", cls.metrics_port, int, 0, 65535),
        )
