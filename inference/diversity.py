"""Maximal marginal relevance (Carbonell and Goldstein 1998): a diversity re-rank of a candidate list.

Pure: candidates' ids, scores and vectors in, reordered ids out (no store, no clock). Each step picks
the candidate maximising

    (1 - weight) * relevance(c) - weight * max over already picked p of cosine(c, p)

where relevance is the candidate's score min-max scaled to [0, 1] over the list, so ``weight`` means the
same whatever the scale of the ranking's scores. weight 0 keeps the order; larger weights trade
relevance for lists whose movies are less alike. A candidate with a zero vector (no collaborative vector)
is similar to nothing and so is never pushed down for redundancy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MMR_WEIGHT = 0.0
"""The re-rank's default diversity weight: off. In the validation grid of benchmarks/quality_study.py
0.1-0.2 added 0.3-0.6 points of hit rate and about 1 point of coverage (within one standard error) and
did not hold on test (docs/evaluation.md)."""


def mmr(ids: Sequence[str], scores: Sequence[float], vectors: np.ndarray, weight: float = MMR_WEIGHT,
        n: int | None = None) -> list[str]:
    """The first ``n`` (default: all) of ``ids`` in maximal-marginal-relevance order.

    ``ids`` and ``scores`` are the candidates, best first or not; ``vectors`` has one row per candidate.
    Ties go to the candidate listed first, so weight 0 returns the list sorted by score, stable."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the MMR weight must lie in [0, 1], got {weight}.")
    vectors = np.asarray(vectors, dtype=np.float64)
    if len(ids) != len(scores) or vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError("mmr needs one score and one vector row per candidate id.")
    count = len(ids) if n is None else max(0, min(n, len(ids)))
    if count == 0:
        return []
    score = np.asarray(scores, dtype=np.float64)
    spread = score.max() - score.min()
    relevance = (score - score.min()) / spread if spread > 0 else np.ones_like(score)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    redundancy = np.full(len(ids), -np.inf)  # max cosine to the picked ones; -inf until one is picked
    available = np.ones(len(ids), dtype=bool)
    picked: list[int] = []
    for _ in range(count):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        value = np.where(available, (1.0 - weight) * relevance - weight * penalty, -np.inf)
        best = int(np.argmax(value))  # first of equal values: the earlier candidate
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, unit @ unit[best])
    return [ids[i] for i in picked]
