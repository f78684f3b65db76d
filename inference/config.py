"""Settings of the inference service, read once from the environment, with documented defaults.

`RankConfig` holds every weight of the ranking in one place (the evaluation work tunes them);
`ServiceSettings` holds what the shell around it needs (port, cache sizes, TTLs, history length).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """An integer from the environment, or a ValueError naming the variable when it is not one."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    """A float from the environment, or a ValueError naming the variable when it is not one."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class RankConfig:
    """Weights of `inference.ranking.rank`; defaults documented field by field.

    score(c) = [sum over history movies h of  rating_weight(h) * recency_decay**position(h) * sim(h, c)]
               / (viewers(c) + 1) ** popularity_damping
               + popularity_weight * popularity_norm(c)
    where popularity_norm is log1p(viewers) / log1p(max viewers) in [0, 1] and
    sim(h, c) = content_weight * sim_minilm(h, c) + collab_weight * sim_collaborative(h, c).
    The defaults of the last four weights come from the offline grid in docs/evaluation.md.
    """

    n_results: int = 20
    """How many ids a recommendation holds (the simulator's contract: up to 20)."""
    rating_weights: tuple[float, float, float, float, float] = (-1.0, -0.5, 0.2, 0.7, 1.0)
    """Weight of a history movie rated 1, 2, 3, 4, 5: liked raises, 3 is mild, 2 or less pushes away."""
    unrated_rating: int = 3
    """The rating an unrated watch counts as."""
    recency_decay: float = 0.97
    """Multiplier per position in the history (most recent first): older watches count a little less."""
    popularity_weight: float = 0.05
    """Weight of the normalized, log-scaled popularity blended into every personalized score."""
    min_similarity: float = 0.0
    """Neighbours less similar than this are ignored."""
    popularity_damping: float = 0.0
    """Exponent of the (viewers + 1) divisor of a personalized affinity: 0 keeps it, larger values push
    the list from blockbusters into the long tail (more coverage). The grid's 0.1 bought 3-4 points of
    coverage for 1.5 points of hit rate; coverage is already above its target at 0, so 0 it is."""
    content_weight: float = 0.5
    """Weight of the MiniLM (content) neighbours' similarity in the blended neighbour lists (0.25..0.75
    formed a plateau in the grid; 0.5 is its middle)."""
    collab_weight: float = 1.0
    """Weight of the collaborative (co-watching, collection `movies_cf`) neighbours' similarity."""

    def weight_of(self, rating: float | None) -> float:
        """The weight of a history movie with this rating (None counts as `unrated_rating`)."""
        value = self.unrated_rating if rating is None else rating
        index = min(max(round(value), 1), 5) - 1
        return self.rating_weights[index]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RankConfig:
        """Read RANK_* overrides (RANK_RATING_WEIGHTS is five comma-separated numbers)."""
        env = os.environ if env is None else env
        weights = cls.rating_weights
        raw = env.get("RANK_RATING_WEIGHTS")
        if raw:
            try:
                parsed = tuple(float(part) for part in raw.split(","))
            except ValueError as exc:
                raise ValueError(f"RANK_RATING_WEIGHTS must be five numbers, got {raw!r}") from exc
            if len(parsed) != 5:
                raise ValueError(f"RANK_RATING_WEIGHTS must be five numbers, got {raw!r}")
            weights = parsed
        return cls(
            n_results=_int(env, "RANK_N_RESULTS", cls.n_results, minimum=1),
            rating_weights=weights,
            unrated_rating=_int(env, "RANK_UNRATED_RATING", cls.unrated_rating, minimum=1),
            recency_decay=_float(env, "RANK_RECENCY_DECAY", cls.recency_decay),
            popularity_weight=_float(env, "RANK_POPULARITY_WEIGHT", cls.popularity_weight),
            min_similarity=_float(env, "RANK_MIN_SIMILARITY", cls.min_similarity),
            popularity_damping=_float(env, "RANK_POPULARITY_DAMPING", cls.popularity_damping),
            content_weight=_float(env, "RANK_CONTENT_WEIGHT", cls.content_weight),
            collab_weight=_float(env, "RANK_COLLAB_WEIGHT", cls.collab_weight),
        )


@dataclass(frozen=True)
class ServiceSettings:
    """What the service's shell needs; every field has an environment variable and a default."""

    port: int = 8082
    """PORT: the port gunicorn binds."""
    host: str = "0.0.0.0"
    """HOST: the address gunicorn binds (tests and benchmarks use 127.0.0.1)."""
    history_size: int = 50
    """RECOMMEND_HISTORY_SIZE: the most recent N watched or rated movies the ranking reads."""
    exclude_limit: int = 30_000
    """RECOMMEND_EXCLUDE_LIMIT: the most movies of one user's history read per request (in the same
    round trip as the ranked part); none of them is ever recommended. The default exceeds the
    simulator's catalog (27,000), so in practice a user's whole history is excluded."""
    model_poll_seconds: float = 5.0
    """MODEL_POLL_SECONDS: how often each worker looks up the active model version (one indexed row)."""
    switch_warm: int = 5_000
    """MODEL_SWITCH_WARM: neighbour lists of the most watched movies fetched for a newly promoted version
    before the worker switches to it."""
    provenance_log: str = "data/provenance.log"
    """PROVENANCE_LOG: file receiving one JSON line per served answer (request id, user, version, ids)
    for `python -m training provenance`; '' turns it off."""
    neighbours_k: int = 20
    """RECOMMEND_NEIGHBOURS_K: nearest neighbours fetched per history movie."""
    neighbour_cache_size: int = 30_000
    """NEIGHBOUR_CACHE_SIZE: per-movie neighbour lists kept in the LRU (a catalog of 27k fits)."""
    warm_neighbours: int = 30_000
    """NEIGHBOUR_WARM_COUNT: when a worker starts, a background thread fetches the neighbour lists of
    this many most-watched movies, most watched first (the whole catalog by default: about 11 MB), so
    requests soon stop paying for cache misses."""
    warm_seconds: float = 300.0
    """NEIGHBOUR_WARM_SECONDS: time budget of that background warm-up."""
    version_check_seconds: float = 5.0
    """VECTOR_VERSION_CHECK_SECONDS: how often the vector collection's version is compared."""
    popular_size: int = 200
    """POPULAR_SIZE: length of the cached popular list (the cold-start answer and the fill)."""
    popular_ttl_seconds: float = 60.0
    """POPULAR_TTL_SECONDS: age after which the popular list is reloaded from the store."""
    popular_snapshot: str = "data/popular.json"
    """POPULAR_SNAPSHOT: file keeping the last good popular list across restarts ('' turns it off)."""
    ready_cache_seconds: float = 2.0
    """READY_CACHE_SECONDS: /ready probes dependencies at most this often."""
    batch_max_users: int = 1000
    """The largest `user_ids` list POST /recommend accepts."""
    encoder_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    """ENCODER_NAME: the model the stored vectors were made with (reported by /model/info)."""
    access_log: bool = True
    """ACCESS_LOG: 0 turns off the JSON access log lines."""
    rank: RankConfig = field(default_factory=RankConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read the settings from the environment (see each field's docstring for its variable)."""
        env = os.environ if env is None else env
        return cls(
            port=_int(env, "PORT", cls.port, minimum=1),
            host=env.get("HOST", cls.host) or cls.host,
            history_size=_int(env, "RECOMMEND_HISTORY_SIZE", cls.history_size, minimum=1),
            exclude_limit=_int(env, "RECOMMEND_EXCLUDE_LIMIT", cls.exclude_limit, minimum=1),
            model_poll_seconds=_float(env, "MODEL_POLL_SECONDS", cls.model_poll_seconds),
            switch_warm=_int(env, "MODEL_SWITCH_WARM", cls.switch_warm),
            provenance_log=env.get("PROVENANCE_LOG", cls.provenance_log),
            neighbours_k=_int(env, "RECOMMEND_NEIGHBOURS_K", cls.neighbours_k, minimum=1),
            neighbour_cache_size=_int(env, "NEIGHBOUR_CACHE_SIZE", cls.neighbour_cache_size, minimum=1),
            warm_neighbours=_int(env, "NEIGHBOUR_WARM_COUNT", cls.warm_neighbours),
            warm_seconds=_float(env, "NEIGHBOUR_WARM_SECONDS", cls.warm_seconds),
            version_check_seconds=_float(env, "VECTOR_VERSION_CHECK_SECONDS", cls.version_check_seconds),
            popular_size=_int(env, "POPULAR_SIZE", cls.popular_size, minimum=1),
            popular_ttl_seconds=_float(env, "POPULAR_TTL_SECONDS", cls.popular_ttl_seconds),
            popular_snapshot=env.get("POPULAR_SNAPSHOT", cls.popular_snapshot),
            ready_cache_seconds=_float(env, "READY_CACHE_SECONDS", cls.ready_cache_seconds),
            encoder_name=env.get("ENCODER_NAME", cls.encoder_name) or cls.encoder_name,
            access_log=env.get("ACCESS_LOG", "1").strip().lower() not in {"0", "false", "no", "off"},
            rank=RankConfig.from_env(env),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for /model/info."""
        return asdict(self)
