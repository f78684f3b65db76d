"""Settings of the inference service, read once from the environment, with documented defaults.

`RankConfig` holds every weight of the ranking in one place (the evaluation work tunes them; a model
version records the one it is served with, its history length and neighbour count included);
`ServiceSettings` holds what the shell around it needs (port, cache sizes, TTLs, the popular list's
length). Both are `core.settings.EnvSettings`: a bad value is a startup error naming the variable and the
accepted form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from core.settings import EnvSettings, env
from embeddings.config import EmbeddingSettings

UNRECORDED: dict[str, Any] = {"damping_slope": 0.0, "tail_slots": 0, "history_size": 50, "neighbours_k": 30}
"""RankConfig fields added after versions were first recorded, with the value a version recorded without
them was gated and is served with: the switches off, and the history length and neighbour count that
were service settings then (their defaults)."""


@dataclass(frozen=True)
class RankConfig(EnvSettings):
    """Weights of `inference.ranking.rank`; defaults documented field by field.

    score(c) = [sum over history movies h of  rating_weight(h) * recency_decay**position(h) * sim(h, c)**e]
               / (viewers(c) + 1) ** damping(user)
               + popularity_weight * popularity_norm(c)
    where popularity_norm is log1p(viewers) / log1p(max viewers) in [0, 1] and
    sim(h, c) = content_weight * sim_minilm(h, c) + collab_weight * sim_collaborative(h, c) and
    sim**e = sign(sim) * |sim| ** similarity_exponent and
    damping(user) = popularity_damping + damping_slope * (damping_center - mean popularity_norm(h)).
    With tail_slots > 0 the last tail_slots places come from a second such score (`tail_config`).
    The defaults of the last four weights come from the offline grid in docs/evaluation.md.
    """

    n_results: int = env("RANK_N_RESULTS", 20, minimum=1)
    """How many ids a recommendation holds (the simulator's contract: up to 20)."""
    history_size: int = env("RECOMMEND_HISTORY_SIZE", 50, minimum=1)
    """The most recent N watched or rated movies the ranking reads (the whole history is excluded all the
    same). Part of the ranking, so recorded with a version: the gate scores it and the service reads it
    from the version it serves, whatever the serving process's environment says."""
    neighbours_k: int = env("RECOMMEND_NEIGHBOURS_K", 30, minimum=1)
    """Nearest neighbours fetched per history movie from each collection (30 on the temporal validation
    split: +0.3 points of hit rate over 20, level with 50, docs/evaluation.md); recorded like history_size."""
    rating_weights: tuple[float, float, float, float, float] = env("RANK_RATING_WEIGHTS", (0.2, 0.3, 0.5, 0.8, 1.0))
    """Weight of a history movie rated 1, 2, 3, 4, 5: liked counts most, but a watched movie rated low
    still says what the user watches (the temporal validation split: (0.2, 0.3, 0.5, 0.8, 1) 18.3% hit rate
    against 16.1% for the former (-1, -0.5, 0.2, 0.7, 1), docs/evaluation.md). A negative weight pushes
    that movie's neighbours away."""
    unrated_rating: int = env("RANK_UNRATED_RATING", 3, minimum=1, maximum=5)
    """The rating an unrated watch counts as."""
    recency_decay: float = env("RANK_RECENCY_DECAY", 0.9, minimum=0.0)
    """Multiplier per position in the history (most recent first): older watches count less (0.9 with ALS
    item vectors: +1.8 points on the leave-last-out validation split, level on the temporal one,
    docs/evaluation.md)."""
    popularity_weight: float = env("RANK_POPULARITY_WEIGHT", 0.05)
    """Weight of the normalized, log-scaled popularity blended into every personalized score."""
    min_similarity: float = env("RANK_MIN_SIMILARITY", 0.0)
    """Neighbours less similar than this are ignored."""
    popularity_damping: float = env("RANK_POPULARITY_DAMPING", -0.25, minimum=-1.0)
    """Exponent of the (viewers + 1) divisor of a personalized affinity (viewers from the popular list,
    `ServiceSettings.popular_size` long; 0 outside it): positive values push the list from blockbusters
    into the long tail (more coverage), negative ones multiply the affinity by (viewers + 1) ** 0.25 at
    -0.25, as EASE's weights scale with a movie's viewers. -0.25 was the temporal validation split's
    best (docs/evaluation.md: about +1.1 points of hit rate, coverage 27% -> 15%)."""
    damping_slope: float = env("RANK_DAMPING_SLOPE", 0.5)
    """Personalises the damping: a user's exponent is popularity_damping + damping_slope * (damping_center
    - m), m the mean popularity_norm (log-scaled viewers in [0, 1], 0 outside the popular list) of the
    history movies the ranking reads. With a positive slope a mainstream user (m above the center) keeps
    the popular end and a long-tail user (m below it) is pushed into the tail. 0: every user gets
    popularity_damping. 0.5: coverage +3 points at no cost in hit rate on both validation splits."""
    damping_center: float = env("RANK_DAMPING_CENTER", 0.6)
    """The history popularity m at which a user's damping exponent is exactly popularity_damping (0.6:
    about the median user's m on the demo's splits)."""
    tail_slots: int = env("RANK_TAIL_SLOTS", 3, minimum=0)
    """The last `tail_slots` places of the list go to a second, long-tail score: the same affinity summed
    with `tail_recency_decay`, damped by `tail_damping` (personalised by `tail_damping_slope` around
    `damping_center`), best first among the movies not already listed. The head keeps the accuracy end,
    the tail slots bring the catalog's coverage and the user's most recent taste. 0: one score. 3 (with the
    three values below) was the validation pick that came nearest to both splits' goals
    (docs/evaluation.md, "Moving the frontier")."""
    tail_damping: float = env("RANK_TAIL_DAMPING", 0.3, minimum=-1.0)
    """popularity_damping of the tail slots' score."""
    tail_damping_slope: float = env("RANK_TAIL_DAMPING_SLOPE", 4.0)
    """damping_slope of the tail slots' score."""
    tail_recency_decay: float = env("RANK_TAIL_RECENCY_DECAY", 0.5, minimum=0.0)
    """recency_decay of the tail slots' score (lower: the most recent watches decide)."""
    content_weight: float = env("RANK_CONTENT_WEIGHT", 0.5)
    """Weight of the MiniLM (content) neighbours' similarity in the blended neighbour lists (0.25..0.75
    formed a plateau in the grid; 0.5 is its middle)."""
    collab_weight: float = env("RANK_COLLAB_WEIGHT", 1.0)
    """Weight of the collaborative (co-watching, collection `movies_cf`) neighbours' similarity."""
    similarity_exponent: float = env("RANK_SIMILARITY_EXPONENT", 1.0, minimum=0.0)
    """Each (blended) neighbour similarity s enters the affinity as sign(s) * |s| ** exponent: above 1
    the closest neighbours count more against a crowd of loose ones."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, base: RankConfig | None = None) -> RankConfig:
        """The config a model version recorded (`dataclasses.asdict` stored as JSON): unknown keys are
        ignored, unrecorded fields keep `base`'s values (default: the defaults), except the switches added
        later (`UNRECORDED`): a record without them was ranked with those values, and still is."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (record or {}).items() if k in known}
        if values:  # a version recorded before a switch existed was served without it
            values = {**{k: v for k, v in UNRECORDED.items() if k not in values}, **values}
        if "rating_weights" in values:
            values["rating_weights"] = tuple(values["rating_weights"])
        return replace(base or cls(), **values)

    def tail_config(self) -> RankConfig:
        """The config whose ranking fills the tail slots: the tail_* values in place of the head's, one score,
        long enough to fill `tail_slots` after the head's movies are removed."""
        return replace(self, popularity_damping=self.tail_damping, damping_slope=self.tail_damping_slope,
                       recency_decay=self.tail_recency_decay, tail_slots=0, n_results=2 * self.n_results)

    def weight_of(self, rating: float | None) -> float:
        """The weight of a history movie with this rating (None counts as `unrated_rating`)."""
        value = self.unrated_rating if rating is None else rating
        index = min(max(round(value), 1), 5) - 1
        return self.rating_weights[index]


@dataclass(frozen=True)
class ServiceSettings(EnvSettings):
    """What the service's shell needs; every field has an environment variable and a default."""

    port: int = env("PORT", 8082, minimum=1, maximum=65535)
    """the port gunicorn binds."""
    host: str = env("HOST", "0.0.0.0")
    """the address gunicorn binds (tests and benchmarks use 127.0.0.1)."""
    exclude_limit: int = env("RECOMMEND_EXCLUDE_LIMIT", 30_000, minimum=1)
    """the most watched and the most rated ids of one user read per request (in the
    same round trip as the ranked part, as one string each); none of them is ever recommended. The
    default exceeds the simulator's catalog (27,000), so in practice a user's whole history is excluded."""
    model_poll_seconds: float = env("MODEL_POLL_SECONDS", 5.0, minimum=0.05)
    """how often each worker looks up the active model version (one indexed row)."""
    switch_warm: int = env("MODEL_SWITCH_WARM", 5_000, minimum=0)
    """neighbour lists of the most watched movies fetched for a newly promoted version
    before the worker switches to it."""
    provenance_log: str = env("PROVENANCE_LOG", "data/provenance.log", blank=True)
    """file receiving one JSON line per served answer (request id, user, version, ids)
    for `python -m training provenance`; '' turns it off."""
    neighbour_cache_size: int = env("NEIGHBOUR_CACHE_SIZE", 30_000, minimum=1)
    """per-movie neighbour lists kept in the LRU (a catalog of 27k fits)."""
    neighbour_cache_bytes: int = env("NEIGHBOUR_CACHE_BYTES", 64 * 1024 * 1024, minimum=1)
    """estimated bytes one model version's neighbour cache may hold (lists plus its id table; about
    700 bytes a blended 40-neighbour list and 150 an id, so the 27k-movie catalog takes about 23 MB);
    the least recently used lists are evicted beyond it. Reported in /ready and /metrics."""
    warm_neighbours: int = env("NEIGHBOUR_WARM_COUNT", 30_000, minimum=0)
    """when a worker starts, a background thread fetches the neighbour lists of
    this many most-watched movies, most watched first (the whole catalog by default: about 11 MB), so
    requests soon stop paying for cache misses."""
    warm_seconds: float = env("NEIGHBOUR_WARM_SECONDS", 300.0, minimum=0.0)
    """time budget of that background warm-up."""
    version_check_seconds: float = env("VECTOR_VERSION_CHECK_SECONDS", 5.0, minimum=0.0)
    """how often the vector collection's version is compared."""
    popular_size: int = env("POPULAR_SIZE", 2000, minimum=1)
    """length of the cached popular list (the cold-start answer, the fill and the viewer counts the
    ranking's popularity damping reads: movies outside it count 0 viewers; 2,000 on the temporal validation
    split, 200 lost 1.4 points of hit rate with the damping of -0.25)."""
    popular_ttl_seconds: float = env("POPULAR_TTL_SECONDS", 60.0, minimum=0.0)
    """age after which the popular list is reloaded from the store."""
    popular_snapshot: str = env("POPULAR_SNAPSHOT", "data/popular.json", blank=True)
    """file keeping the last good popular list across restarts ('' turns it off)."""
    ready_cache_seconds: float = env("READY_CACHE_SECONDS", 2.0, minimum=0.0)
    """/ready probes dependencies at most this often."""
    batch_max_users: int = env("RECOMMEND_BATCH_MAX_USERS", 1000, minimum=1)
    """The largest `user_ids` list POST /recommend accepts."""
    encoder_name: str = env("ENCODER_NAME", "sentence-transformers/all-MiniLM-L6-v2")
    """the model the stored vectors were made with (reported by /model/info)."""
    access_log: bool = env("ACCESS_LOG", True)
    """0 turns off the JSON access log lines."""
    rank: RankConfig = field(default_factory=RankConfig)
    """The ranking's weights before any model version exists (a version is served with its own)."""
    vectors: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    """Where the vectors are (CHROMA_PATH or CHROMA_HOST/CHROMA_PORT, CHROMA_COLLECTION): the service opens
    its vector stores from these settings only."""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for /model/info."""
        return asdict(self)
