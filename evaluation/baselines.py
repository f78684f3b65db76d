"""Baseline recommenders for the offline evaluation, pure functions over the held-in user-item matrix.

* most popular: the movies with the most viewers the user has not seen;
* random: unseen movies drawn uniformly from the store's movies with a seeded generator;
* item-kNN: classic item-based collaborative filtering (Sarwar et al.): cosine similarity of the movies'
  columns in the binary user-item matrix, each movie keeping its ``k`` most similar ones; a user's score
  of a movie is the sum of its similarities to every movie in the user's whole history;
* EASE (Steck 2019): the closed-form item-item weights B = I - P / diag(P), P = (X^T X + lam I)^-1; a
  user's scores are their row of X times B (lambda chosen on the validation split,
  benchmarks/quality_study.py); optionally divided by (viewers + 1) ** popularity_damping;
* ALS: implicit-feedback matrix factorisation by the ``implicit`` package (CPU, seeded, fixed threads);
  a user's scores are their factors times the item factors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from embeddings.collaborative import Interactions, als_factors, ease_weights


def _top_unseen(scores: np.ndarray, seen: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the n best scores among unseen columns, best first, ties by index (scores are
    rounded to 12 decimals first, so float summation noise never decides a tie)."""
    scores = np.round(scores.astype(np.float64), 12)
    scores[seen] = -np.inf
    n = min(n, int(np.isfinite(scores).sum()))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:n]


def most_popular(data: Interactions, users: Sequence[int], n: int = 20) -> dict[int, list[str]]:
    """The ``n`` most watched movies each user has not seen."""
    matrix = data.matrix.tocsr()
    viewers = np.asarray(matrix.sum(axis=0)).ravel()
    row_of = {u: i for i, u in enumerate(data.users)}
    out: dict[int, list[str]] = {}
    for user in users:
        seen = matrix[row_of[user]].indices if user in row_of else np.zeros(0, dtype=np.int64)
        out[user] = [data.movies[j] for j in _top_unseen(viewers, seen, n)]
    return out


def random_unseen(data: Interactions, users: Sequence[int], n: int = 20, seed: int = 0) -> dict[int, list[str]]:
    """``n`` unseen movies per user drawn uniformly (seeded; users in the given order)."""
    rng = np.random.default_rng(seed)
    matrix = data.matrix.tocsr()
    row_of = {u: i for i, u in enumerate(data.users)}
    out: dict[int, list[str]] = {}
    for user in users:
        seen = set(matrix[row_of[user]].indices.tolist()) if user in row_of else set()
        picks: list[str] = []
        for j in rng.permutation(len(data.movies)):
            if int(j) not in seen:
                picks.append(data.movies[int(j)])
                if len(picks) == n:
                    break
        out[user] = picks
    return out


def item_similarity_topk(matrix: sp.csr_matrix, k: int, block: int = 1024) -> sp.csr_matrix:
    """Cosine similarity between the columns of ``matrix``, each row keeping its ``k`` largest (itself
    excluded), computed a block of rows at a time so memory stays at block x movies."""
    x = matrix.tocsc().astype(np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    xn = (x @ sp.diags(inv)).tocsc()
    n_items = xn.shape[1]
    k = min(k, max(n_items - 1, 0))
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        sims = (xn[:, start:stop].T @ xn).toarray()
        sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if k == 0:
            continue
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_vals = np.take_along_axis(sims, top, axis=1)
        keep = top_vals > 0
        rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
        cols.append(top.ravel()[keep.ravel()])
        vals.append(top_vals.ravel()[keep.ravel()])
    if not rows:
        return sp.csr_matrix((n_items, n_items))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_items, n_items))


def _query_rows(data: Interactions, users: Sequence[int],
                histories: Mapping[int, Sequence[str]] | None) -> tuple[sp.csr_matrix, np.ndarray]:
    """The binary rows the users are scored from, one per user in order, and a mask of the users that
    have one. By default a user's row of ``data``; with ``histories`` the given movies instead (a
    cold-start probe: the model is fitted on ``data``, the user is known by these movies only; movies
    outside ``data`` are ignored)."""
    matrix = data.matrix.tocsr()
    if histories is None:
        row_of = {u: i for i, u in enumerate(data.users)}
        known = np.array([u in row_of for u in users], dtype=bool)
        picks = [row_of.get(u, 0) for u in users]
        rows = matrix[picks] if picks else sp.csr_matrix((0, matrix.shape[1]))
        return sp.csr_matrix(rows.multiply(known[:, None])), known
    col_of = {m: j for j, m in enumerate(data.movies)}
    coords = sorted({(i, col_of[m]) for i, u in enumerate(users) for m in histories.get(u, ()) if m in col_of})
    r = np.array([i for i, _ in coords], dtype=np.int64)
    c = np.array([j for _, j in coords], dtype=np.int64)
    rows = sp.csr_matrix((np.ones(len(coords)), (r, c)), shape=(len(users), matrix.shape[1]))
    return rows, np.diff(rows.indptr) > 0


def _lists(data: Interactions, users: Sequence[int], scores: np.ndarray, rows: sp.csr_matrix, known: np.ndarray,
           n: int) -> dict[int, list[str]]:
    """Top-n movies per user from a (users x movies) score array, the user's query movies removed."""
    return {user: [data.movies[j] for j in _top_unseen(scores[i], rows[i].indices, n)] if known[i] else []
            for i, user in enumerate(users)}


def item_knn(data: Interactions, users: Sequence[int], n: int = 20, k: int = 20,
             histories: Mapping[int, Sequence[str]] | None = None) -> dict[int, list[str]]:
    """Item-kNN recommendations: score = user row x top-k cosine similarity matrix; seen movies removed
    (``histories``: see `_query_rows`)."""
    rows, known = _query_rows(data, users, histories)
    scores = np.asarray((rows @ item_similarity_topk(data.matrix.tocsr(), k)).todense())
    scores[scores <= 0] = -np.inf  # no similarity at all: not a candidate
    return _lists(data, users, scores, rows, known, n)


EASE_LAMBDA = 50.0
"""EASE's lambda by the validation grid of benchmarks/quality_study.py (docs/evaluation.md)."""
EASE_GRID: tuple[float, ...] = (10.0, 20.0, 50.0, 100.0, 200.0, 400.0)
"""The lambdas that grid tries."""


def ease(data: Interactions, users: Sequence[int], n: int = 20, lam: float = EASE_LAMBDA,
         popularity_damping: float = 0.0, histories: Mapping[int, Sequence[str]] | None = None
         ) -> dict[int, list[str]]:
    """EASE recommendations: score = user row x B (B from ``ease_weights``), seen movies removed; with
    ``popularity_damping`` > 0 each score is divided by (viewers + 1) ** popularity_damping
    (``histories``: see `_query_rows`)."""
    matrix = data.matrix.tocsr()
    rows, known = _query_rows(data, users, histories)
    scores = np.asarray(rows @ ease_weights(matrix, lam)) if known.any() else np.zeros((len(users), matrix.shape[1]))
    if popularity_damping:
        viewers = np.asarray(matrix.sum(axis=0)).ravel()
        scores = scores / (viewers + 1.0) ** popularity_damping
    return _lists(data, users, scores, rows, known, n)


ALS_REGULARIZATION = 0.2
"""ALS's L2 weight by the validation grid (docs/evaluation.md)."""
ALS_ITERATIONS = 15
"""ALS sweeps by the validation grid (docs/evaluation.md)."""


def als(data: Interactions, users: Sequence[int], n: int = 20, factors: int = 128,
        regularization: float = ALS_REGULARIZATION, iterations: int = ALS_ITERATIONS, alpha: float = 1.0,
        seed: int = 0, threads: int = 1) -> dict[int, list[str]]:
    """ALS recommendations (``implicit``, CPU, ``threads`` threads, seeded so a rerun gives the same
    lists): score = user factors x item factors, seen movies removed."""
    matrix = data.matrix.tocsr()
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        return {u: [] for u in users}
    user_factors, item_factors = als_factors(matrix, factors, regularization, iterations, alpha, seed, threads)
    row_of = {u: i for i, u in enumerate(data.users)}
    rows, known = _query_rows(data, users, None)
    scores = user_factors[[row_of.get(u, 0) for u in users]] @ item_factors.T
    return _lists(data, users, scores, rows, known, n)
