"""Collaborative item vectors: a factorisation of the user-item matrix (pure numpy/scipy/implicit, no I/O).

Why: MiniLM vectors say which movies *read* alike; these say which movies are *watched by the same
people*. Both are stored in ChromaDB (collections ``movies`` and ``movies_cf``), so the service stays a
vector search and never factorises anything online.

Semantics: X is the binary user x movie matrix (1 when the user watched or rated the movie). With the
truncated SVD X ~ U diag(s) V^T of rank ``dim``, a movie's vector is its row of V diag(sqrt(s)), scaled to
unit length, so cosine similarity of two movies is the (rank-reduced) co-watching similarity. Scaling by
sqrt(s) keeps the minor factors in play; it beat unscaled factors and a degree-normalised matrix on the
MovieLens leave-last-out (docs/evaluation.md).

Methods (``CollabConfig.method``):
* ``svd``: the truncated SVD above;
* ``als``: the item factors of implicit-feedback ALS (Hu, Koren and Volinsky; the ``implicit`` package,
  CPU, seeded, a fixed thread count), each scaled to unit length; the default, on the idf-weighted matrix
  (confidence 1 + alpha * weight): better than ``svd`` on both validation splits (docs/evaluation.md);
* ``ease``: a low-rank view of EASE (Steck 2019): the item Gram matrix's inverse P = (X^T X + lam I)^-1
  gives EASE's weights B = I - P / diag(P); their symmetric part S_ij = -P_ij / sqrt(P_ii P_jj) (a
  partial correlation of the two movies' columns) is approximated by its ``dim`` largest eigenpairs, a
  movie's vector being its row of Q sqrt(lambda), so the dot product of two movies approximates S.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

METHODS = ("svd", "als", "ease")
WEIGHTINGS = ("binary", "idf", "bm25")


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
    method: "svd" (truncated SVD), "als" (implicit ALS item factors, the default: on the idf-weighted
        matrix +3.4 points of hit rate on the leave-last-out validation split and +0.2 on the temporal
        one over svd, docs/evaluation.md) or "ease" (low-rank EASE); see the module docstring.
    regularization: ALS's L2 weight (``als`` only).
    iterations: ALS sweeps (``als`` only).
    alpha: ALS confidence scale, confidence = 1 + alpha * value (``als`` only; 2 was +0.4 points over 1
        on the temporal validation split, level on leave-last-out).
    ease_lambda: EASE's L2 weight on the item-item weights (``ease`` only).
    threads: CPU threads ALS may use (a fixed number, so a run neither oversubscribes a shared machine
        nor changes with it).
    weighting: how the binary matrix is weighted before the factorisation (`weighted_matrix`): "binary"
        (as it is), "idf" (each movie's column times log(users / viewers), the default: +1.5 points of hit
        rate on the temporal validation split, docs/evaluation.md) or "bm25" (idf times BM25's saturation
        of each user's row length, k1 = 1.2, b = 0.75: heavy users count less; it lost).
    """

    dim: int = 64
    seed: int = 0
    min_viewers: int = 2
    tie_jitter: float = 3e-3
    method: str = "als"
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 2.0
    ease_lambda: float = 200.0
    threads: int = 1
    weighting: str = "idf"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"CollabConfig.method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"CollabConfig.weighting must be one of {', '.join(WEIGHTINGS)}, "
                             f"got {self.weighting!r}.")


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


def _truncated_svd(matrix: sp.csr_matrix | np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(s, V) of the rank-``dim`` SVD, largest factor first; dense LAPACK for tiny matrices."""
    if dim >= min(matrix.shape) - 1:
        dense = matrix.toarray() if isinstance(matrix, sp.spmatrix | sp.sparray) else np.asarray(matrix)
        _, s, vt = np.linalg.svd(dense, full_matrices=False)
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


def als_factors(matrix: sp.csr_matrix, factors: int, regularization: float, iterations: int, alpha: float,
                seed: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of implicit ALS on ``matrix`` (users x items, values = confidence
    before alpha), float64. CPU only, ``threads`` worker threads and BLAS held to one thread (implicit's
    own advice), seeded: the same matrix gives the same factors."""
    if factors < 1 or iterations < 1 or threads < 1:
        raise ValueError("ALS needs factors, iterations and threads of at least 1.")
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, random_state=seed, num_threads=threads,
                                        calculate_training_loss=False)
        model.fit(matrix.tocsr().astype(np.float32), show_progress=False)
    return np.asarray(model.user_factors, dtype=np.float64), np.asarray(model.item_factors, dtype=np.float64)


def _ease_precision(matrix: sp.csr_matrix, lam: float) -> np.ndarray:
    """P = (X^T X + lam I)^-1, dense float64 (items x items)."""
    if lam <= 0:
        raise ValueError(f"EASE's lambda must be positive, got {lam}.")
    import scipy.linalg

    x = matrix.tocsc().astype(np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += lam
    return scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)


def ease_weights(matrix: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's dense item x item weights B = I - P / diag(P) with P = (X^T X + lam I)^-1, so diag(B) = 0
    (Steck 2019, closed form). Memory is a few items x items float64 arrays."""
    weights = _ease_precision(matrix, lam)
    weights /= -np.diag(weights)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease_embedding(matrix: sp.csr_matrix, lam: float, dim: int, seed: int) -> np.ndarray:
    """Item vectors whose dot products approximate EASE's symmetric weights S = -P_ij / sqrt(P_ii P_jj)
    (off the diagonal; B_ij = S_ij * sqrt(P_ii / P_jj), so S is B without its per-movie scales): the
    ``dim`` largest eigenpairs of S, rows of Q sqrt(lambda) (negative eigenvalues dropped)."""
    from scipy.sparse.linalg import eigsh

    p = _ease_precision(matrix, lam)
    scale = 1.0 / np.sqrt(np.diag(p))
    p *= -scale[:, None]
    p *= scale[None, :]
    p[np.diag_indices_from(p)] = 0.0
    n = p.shape[0]
    dim = max(1, min(dim, n - 1))
    if dim >= n - 1 or n < 50:
        values, vectors = np.linalg.eigh(p)
        values, vectors = values[::-1][:dim], vectors[:, ::-1][:, :dim]
    else:
        v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, size=n)
        values, vectors = eigsh(p, k=dim, which="LA", v0=v0)
        order = np.argsort(-values, kind="stable")
        values, vectors = values[order], vectors[:, order]
    return _fixed_signs(vectors) * np.sqrt(np.maximum(values, 0.0))


def _fixed_signs(v: np.ndarray) -> np.ndarray:
    """Each column's sign set so its largest entry is positive (independent of the solver's choice)."""
    flip = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    flip[flip == 0] = 1.0
    return v * flip


def weighted_matrix(matrix: sp.csr_matrix, weighting: str, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """The binary users x movies matrix weighted for the factorisation: "binary" unchanged; "idf" column j
    times log(users / viewers_j) (a movie everyone watched says nothing); "bm25" each entry
    idf_j * (k1 + 1) / (k1 * (1 - b + b * length_u / mean length) + 1) (Robertson's BM25 with a term
    frequency of 1: a user with a long history contributes less per movie)."""
    if weighting == "binary":
        return matrix
    x = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    x.data[:] = 1.0
    users = x.shape[0]
    viewers = np.asarray(x.sum(axis=0)).ravel()
    idf = np.log(users / np.maximum(viewers, 1.0))
    idf = np.maximum(idf, 0.0) + 1e-3 if weighting == "bm25" else np.maximum(idf, 1e-3)
    x = sp.csr_matrix(x @ sp.diags(idf))
    if weighting == "bm25":
        lengths = np.diff(x.indptr).astype(np.float64)
        mean = lengths.mean() if len(lengths) else 1.0
        row = (k1 + 1.0) / (k1 * (1.0 - b + b * lengths / mean) + 1.0)
        x = sp.csr_matrix(sp.diags(row) @ x)
    return x


def _raw_vectors(matrix: sp.csr_matrix, config: CollabConfig) -> np.ndarray:
    """One row per movie (column of ``matrix``) by the config's method, before the unit scaling."""
    matrix = weighted_matrix(matrix, config.weighting)
    dim = max(1, min(config.dim, min(matrix.shape)))
    if config.method == "als":
        _, items = als_factors(matrix, config.dim, config.regularization, config.iterations, config.alpha,
                               config.seed, config.threads)
        return items
    if config.method == "ease":
        return ease_embedding(matrix, config.ease_lambda, dim, config.seed)
    s, v = _truncated_svd(matrix.astype(np.float64), dim, config.seed)
    return _fixed_signs(v) * np.sqrt(np.maximum(s, 0.0))


def item_vectors(interactions: Interactions, config: CollabConfig | None = None) -> tuple[list[str], np.ndarray]:
    """Unit-length collaborative vectors of the movies with at least ``min_viewers`` viewers.

    Returns (movie ids, float32 array of shape (n, dim)) by ``config.method``. Factor signs are fixed
    (each factor's largest entry positive) so the vectors do not depend on the solver's sign choice."""
    config = config or CollabConfig()
    matrix = interactions.matrix
    viewers = np.asarray((matrix > 0).sum(axis=0)).ravel()
    keep = np.flatnonzero(viewers >= config.min_viewers)
    if keep.size == 0 or matrix.shape[0] == 0:
        return [], np.zeros((0, max(1, config.dim)), dtype=np.float32)
    vectors = _raw_vectors(matrix.tocsr(), config)[keep]
    vectors = _unit(vectors)
    if config.tie_jitter > 0:
        noise = _unit(np.random.default_rng(config.seed).normal(size=vectors.shape))
        vectors = _unit(vectors + config.tie_jitter * noise)
    return [interactions.movies[j] for j in keep], vectors.astype(np.float32)
