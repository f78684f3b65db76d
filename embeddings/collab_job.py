"""The collaborative job: watched/rated pairs from the SQL store -> item vectors -> ChromaDB `movies_cf`.

`python -m embeddings collab` (or `python -m embeddings.collab_job`). Offline and periodic, like the
MiniLM job: the service only reads the collection (nearest neighbours), it never factorises online.
Each run replaces the whole collection's content (vectors of movies that lost every viewer are deleted)
and stamps a new version, so the service's neighbour caches are dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, inspect

from core.logs import setup as setup_logs
from core.settings import EnvSettings, env
from db_utils import queries
from embeddings.collaborative import METHODS, WEIGHTINGS, CollabConfig, interaction_matrix, item_vectors
from embeddings.config import EmbeddingSettings
from embeddings.store import VectorStore

log = logging.getLogger("embeddings.collab")
DEFAULT_COLLECTION = EmbeddingSettings.collab_collection


@dataclass(frozen=True)
class CollabEnv(EnvSettings):
    """The factorisation's parameters from the environment (defaults: `CollabConfig`'s)."""

    dim: int = env("COLLAB_DIM", CollabConfig.dim, minimum=1)
    """Latent factors of the item vectors (`CollabConfig.dim`)."""
    seed: int = env("COLLAB_SEED", CollabConfig.seed, minimum=0)
    """Seeds the factorisation and its tie-breaking jitter (`CollabConfig.seed`)."""
    min_viewers: int = env("COLLAB_MIN_VIEWERS", CollabConfig.min_viewers, minimum=1)
    """Movies watched by fewer users get no collaborative vector (`CollabConfig.min_viewers`)."""
    weighting: str = env("COLLAB_WEIGHTING", CollabConfig.weighting, choices=WEIGHTINGS)
    """How the user-item matrix is weighted before the factorisation: binary, idf or bm25
    (`CollabConfig.weighting`)."""
    method: str = env("COLLAB_METHOD", CollabConfig.method, choices=METHODS)
    """The factorisation: svd, als or ease (`CollabConfig.method`)."""
    alpha: float = env("COLLAB_ALPHA", CollabConfig.alpha, minimum=0.0)
    """ALS's confidence scale (`CollabConfig.alpha`)."""


def collab_settings(settings: EmbeddingSettings | None = None,
                    env: Mapping[str, str] | None = None) -> EmbeddingSettings:
    """The embedding settings pointed at the collaborative collection (`collab_collection`,
    CHROMA_COLLAB_COLLECTION, default `movies_cf`); everything else (path or server) is shared with the
    MiniLM collection. `env` is read only when no `settings` are given."""
    settings = settings or EmbeddingSettings.from_env(env)
    return dataclasses.replace(settings, collection=settings.collab_collection)


def collab_config_from_env(env: Mapping[str, str] | None = None) -> CollabConfig:
    """COLLAB_DIM, COLLAB_SEED, COLLAB_MIN_VIEWERS, COLLAB_WEIGHTING, COLLAB_METHOD, COLLAB_ALPHA (see
    `CollabEnv`) as a `CollabConfig`."""
    return CollabConfig(**dataclasses.asdict(CollabEnv.from_env(env)))


def fit_pairs(pairs: list[tuple[int, str]], config: CollabConfig) -> tuple[list[str], Any]:
    """The collaborative fit of (user, movie) pairs: unit item vectors of the movies it can place."""
    return item_vectors(interaction_matrix(pairs), config)


def replace_vectors(store: VectorStore, ids: list[str], vectors: Any) -> tuple[str, int]:
    """Make the collection hold exactly these vectors (others deleted) and stamp a new version;
    returns (version, deleted)."""
    store.mark_dirty()
    gone = sorted(store.ids() - set(ids))
    if gone:
        store.delete(gone)
    if ids:
        store.upsert(ids, vectors)
    return store.stamp_version(), len(gone)


def drop_collection(settings: EmbeddingSettings, name: str) -> bool:
    """Delete the collection `name` where `settings` point (embedded path or server); False if absent."""
    from embeddings.store import make_client

    client = make_client(settings)
    try:
        client.delete_collection(name)
    except Exception as exc:  # chromadb raises NotFoundError / ValueError for a missing collection
        if "does not exist" in str(exc).lower() or "not found" in str(exc).lower():
            return False
        raise
    return True


def build_collab(engine: Engine, store: VectorStore, config: CollabConfig | None = None) -> dict[str, Any]:
    """Factorise the store's user-item matrix and replace the collection's vectors; return a summary."""
    started = time.perf_counter()
    config = config or CollabConfig()
    if not inspect(engine).has_table("watched"):
        raise ValueError("the SQL store has no schema: run `python -m db_utils migrate` first.")
    with engine.connect() as conn:
        pairs = queries.interaction_pairs(conn)
    ids, vectors = fit_pairs(pairs, config)
    version, deleted = replace_vectors(store, ids, vectors)
    summary = {"users": len({u for u, _ in pairs}), "movies": len(ids), "pairs": len(pairs),
               "dim": int(vectors.shape[1]), "deleted": deleted, "version": version,
               "seconds": round(time.perf_counter() - started, 3)}
    log.info({"event": "collab_done", **summary})
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embeddings collab", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: DATABASE_URL or sqlite:///data/recsys.db)")
    parser.add_argument("--dim", type=int, help="latent factors (default: COLLAB_DIM or 64)")
    args = parser.parse_args(argv)
    setup_logs(logging.INFO)
    from sqlalchemy.exc import SQLAlchemyError

    from db_utils.engine import get_engine

    try:
        config = collab_config_from_env()
        if args.dim is not None:
            if args.dim < 1:
                raise ValueError("--dim must be at least 1.")
            config = dataclasses.replace(config, dim=args.dim)
        summary = build_collab(get_engine(args.database_url), VectorStore(collab_settings()), config)
    except (ValueError, OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: collaborative build failed: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
