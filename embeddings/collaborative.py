"""Collaborative item vectors: a truncated SVD of the user-item matrix (pure numpy/scipy, no I/O).

Why: MiniLM vectors say which movies *read* alike; these say which movies are *watched by the same
people*. Both are stored in ChromaDB (collections ``movies`` and ``movies_cf``), so the service stays a
vector search and never factorises anything online.

Semantics: X is the binary user x movie matrix (1 when the user watched or rated the movie). With the
truncated SVD X ~ U diag(s) V^T of rank ``dim``, a movie's vector is its row of V diag(sqrt(s)), scaled to
unit length, so cosine similarity of two movies is the (rank-reduced) co-watching similarity. Scaling by
sqrt(s) keeps the minor factors in play; it beat unscaled factors and a degree-normalised matrix on the
MovieLens leave-last-out (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class CollabConfig:
    """Shape of the factorisation.

    dim: number of latent factors (capped below the matrix's smaller side); 64 by the evaluation grid.
    seed: seeds ARPACK's start vector and the tie-breaking jitter, so a rebuild on the same data gives
        the same vectors.
    min_viewers: movies watched by fewer users get no collaborative vector. A movie seen by one user only
        says nothing about co-watching: its column equals every other single-viewer movie of that user,
        and they would all be each other's exact neighbours (2 was better than 1 and 3 on hit rate and
        coverage together, docs/evaluation.md).
    tie_jitter: length of a seeded random offset added to each unit vector before re-normalising. Movies
        watched by exactly the same users have identical vectors; without it their order among tied
        neighbours would be decided by the vector index's insertion threads, run to run. It moves
        similarities by about tie_jitter squared, far below any real difference.
    """

    dim: int = 64
    seed: int = 0
    min_viewers: int = 2
    tie_jitter: float = 3e-3


@dataclass(frozen=True)
class Interactions:
    """The binary user x movie matrix with the ids of its rows and columns (both sorted)."""

    matrix: sp.csr_matrix
    users: list[int]
    movies: list[str]


def interaction_matrix(pairs: Iterable[tuple[int, str]]) -> Interactions:
    """Build the binary matrix from (user id, movie id) pairs; repeated pairs count once."""
    unique = set(pairs)
    users = sorted({u for u, _ in unique})
    movies = sorted({m for _, m in unique})
    row_of = {u: i for i, u in enumerate(users)}
    col_of = {m: j for j, m in enumerate(movies)}
    rows = np.fromiter((row_of[u] for u, _ in unique), dtype=np.int64, count=len(unique))
    cols = np.fromiter((col_of[m] for _, m in unique), dtype=np.int64, count=len(unique))
    matrix = sp.csr_matrix((np.ones(len(unique), dtype=np.float64), (rows, cols)), shape=(len(users), len(movies)))
    return Interactions(matrix, users, movies)


def _truncated_svd(matrix: sp.csr_matrix, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(s, V) of the rank-``dim`` SVD, largest factor first; dense LAPACK for tiny matrices."""
    if dim >= min(matrix.shape) - 1:
        _, s, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
        return s[:dim], vt[:dim].T
    from scipy.sparse.linalg import svds

    rng = np.random.default_rng(seed)
    v0 = rng.uniform(-1.0, 1.0, size=min(matrix.shape))
    _, s, vt = svds(matrix, k=dim, v0=v0)
    order = np.argsort(-s, kind="stable")
    return s[order], vt[order].T


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def item_vectors(interactions: Interactions, config: CollabConfig | None = None) -> tuple[list[str], np.ndarray]:
    """Unit-length collaborative vectors of the movies with at least ``min_viewers`` viewers.

    Returns (movie ids, float32 array of shape (n, dim)). Each factor's sign is fixed (its largest entry
    positive) so the vectors do not depend on the solver's sign choice."""
    config = config or CollabConfig()
    matrix = interactions.matrix
    viewers = np.asarray((matrix > 0).sum(axis=0)).ravel()
    keep = np.flatnonzero(viewers >= config.min_viewers)
    if keep.size == 0 or matrix.shape[0] == 0:
        return [], np.zeros((0, max(1, config.dim)), dtype=np.float32)
    dim = max(1, min(config.dim, min(matrix.shape)))
    s, v = _truncated_svd(matrix.tocsr().astype(np.float64), dim, config.seed)
    flip = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    flip[flip == 0] = 1.0
    vectors = (v * flip) * np.sqrt(np.maximum(s, 0.0))
    vectors = vectors[keep]
    vectors = _unit(vectors)
    if config.tie_jitter > 0:
        noise = _unit(np.random.default_rng(config.seed).normal(size=vectors.shape))
        vectors = _unit(vectors + config.tie_jitter * noise)
    return [interactions.movies[j] for j in keep], vectors.astype(np.float32)
