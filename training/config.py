"""Settings of the training role, read once from the environment, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import EnvSettings, env


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
    if not seconds > 0:
        raise ValueError(f"{text!r} is not an interval; it must be positive.")
    return seconds


@dataclass(frozen=True)
class TrainingSettings(EnvSettings):
    """What one training cycle does. The per-version collaborative collections are named from
    `EmbeddingSettings.collab_collection` (CHROMA_COLLAB_COLLECTION): `<name>_v<N>`."""

    keep_versions: int = env("TRAIN_KEEP_VERSIONS", 3, minimum=1)
    """Versions whose collections are kept (the active one always is); older collections are deleted,
    their rows stay for the record."""
    holdout_fraction: float = env("TRAIN_HOLDOUT_FRACTION", 0.2, minimum=0.01, maximum=0.99)
    """Share of each user's most recent distinct movies the gate holds out."""
    min_movies: int = env("TRAIN_MIN_MOVIES", 2, minimum=2)
    """Users with fewer distinct movies are not scored by the gate."""
    eval_users: int = env("TRAIN_EVAL_USERS", 2000, minimum=1)
    """The gate scores a seeded sample of at most this many users."""
    tolerance: float = env("TRAIN_TOLERANCE", 0.01, minimum=0.0, maximum=1.0)
    """How far (absolute hit rate at 20) a candidate may fall below the active version."""
    seed: int = env("TRAIN_SEED", 0, minimum=0)
    """Seeds the gate's user sample."""
    metrics_port: int = env("TRAIN_METRICS_PORT", 9104, minimum=0, maximum=65535)
    """The trainer's /metrics port while it runs on a schedule (0: none)."""
    nice: int = env("TRAIN_NICE", 10, minimum=0, maximum=19)
    """CPU niceness the trainer gives itself when `run` starts: a batch job beside the service yields the
    cores to requests first (0: unchanged)."""
