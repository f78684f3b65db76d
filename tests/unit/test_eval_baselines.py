"""EASE and ALS baselines on tiny hand-made matrices: the closed form, unseen-only lists, reruns."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.collaborative import ease_weights, interaction_matrix
from evaluation import baselines

# Two taste groups: users 1-3 watch a, b, c; users 4-6 watch x, y, z; user 7 watches a and x; user 8 a, b.
PAIRS = ([(u, m) for u in (1, 2, 3) for m in "abc"] + [(u, m) for u in (4, 5, 6) for m in "xyz"]
         + [(7, "a"), (7, "x"), (8, "a"), (8, "b")])


def test_ease_weights_are_the_closed_form() -> None:
    data = interaction_matrix(PAIRS)
    x = data.matrix.toarray()
    lam = 2.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    expected = np.eye(x.shape[1]) - p / np.diag(p)
    weights = ease_weights(data.matrix, lam)
    assert np.allclose(weights, expected) and np.all(np.diag(weights) == 0.0)
    with pytest.raises(ValueError, match="lambda must be positive"):
        ease_weights(data.matrix, 0.0)


def test_ease_recommends_the_user_row_times_b_unseen_only() -> None:
    data = interaction_matrix(PAIRS)
    recs = baselines.ease(data, [8, 1, 99], n=4, lam=1.0)
    assert recs[99] == []  # unknown user
    assert recs[8][0] == "c"  # a and b predict c (watched with them by users 1-3)
    assert not {"a", "b"} & set(recs[8]) and not {"a", "b", "c"} & set(recs[1])
    scores = data.matrix.toarray()[data.users.index(8)] @ ease_weights(data.matrix, 1.0)
    unseen = [j for j in np.argsort(-scores, kind="stable") if data.movies[j] not in {"a", "b"}]
    assert recs[8] == [data.movies[j] for j in unseen[:4]]


def test_ease_popularity_damping_divides_by_viewers() -> None:
    # u1 watched h; h is co-watched with "big" (3 users, 7 viewers in all) and "small" (2 users, 2 viewers)
    pairs = ([(1, "h")] + [(u, m) for u in (2, 3, 4) for m in ("h", "big")] + [(u, "small") for u in (2, 3)]
             + [(u, "big") for u in (5, 6, 7, 8)])
    data = interaction_matrix(pairs)
    assert baselines.ease(data, [1], n=2, lam=0.5)[1] == ["big", "small"]
    assert baselines.ease(data, [1], n=2, lam=0.5, popularity_damping=1.0)[1] == ["small", "big"]


def test_als_is_seeded_and_recommends_the_user_group() -> None:
    data = interaction_matrix(PAIRS)
    first = baselines.als(data, [8, 1, 99], n=4, factors=2, regularization=0.01, iterations=20, seed=3)
    again = baselines.als(data, [8, 1, 99], n=4, factors=2, regularization=0.01, iterations=20, seed=3)
    assert first == again
    assert first[99] == [] and first[8][0] == "c"
    assert not {"a", "b"} & set(first[8]) and sorted(first[1]) == ["x", "y", "z"]


def test_als_rejects_a_zero_factor_model() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        baselines.als(interaction_matrix(PAIRS), [1], factors=0)


def test_histories_probe_scores_users_from_the_given_movies_only() -> None:
    data = interaction_matrix(PAIRS)
    # user 1 watched a, b, c; probed as if known by "x" only: the x group comes first, a/b/c may appear
    knn = baselines.item_knn(data, [1, 99], n=2, k=2, histories={1: ["x"], 99: ["y", "unknown"]})
    assert knn[1] == ["y", "z"] and knn[99] == ["z", "x"]  # cos(y, z) = 1 > cos(y, x)
    probed = baselines.ease(data, [1], n=3, lam=1.0, histories={1: ["x"]})
    row = ease_weights(data.matrix, 1.0)[data.movies.index("x")]  # the scores of a user known by x alone
    expected = [data.movies[j] for j in np.argsort(-row, kind="stable") if data.movies[j] != "x"][:3]
    assert probed[1] == expected and "a" in expected  # a watched by user 1 yet not in the probe: eligible
    assert baselines.ease(data, [1], n=2, lam=1.0, histories={1: []}) == {1: []}
