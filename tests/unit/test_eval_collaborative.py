"""Collaborative item vectors, baselines and the neighbour blend, on tiny hand-made matrices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from embeddings.collaborative import CollabConfig, interaction_matrix, item_vectors
from evaluation import baselines
from evaluation.offline import CachingEncoder
from inference.config import RankConfig
from inference.ranking import blend_neighbours, rank

# Two taste groups: users 1-3 watch a, b, c; users 4-6 watch x, y, z; user 7 watches a and x.
PAIRS = [(u, m) for u in (1, 2, 3) for m in "abc"] + [(u, m) for u in (4, 5, 6) for m in "xyz"] + [(7, "a"), (7, "x")]


def cosine(vectors: np.ndarray, i: int, j: int) -> float:
    return float(vectors[i] @ vectors[j])


def test_interaction_matrix_counts_repeated_pairs_once() -> None:
    data = interaction_matrix([*PAIRS, (1, "a"), (1, "a")])
    assert data.users == [1, 2, 3, 4, 5, 6, 7] and data.movies == ["a", "b", "c", "x", "y", "z"]
    assert data.matrix.sum() == len(PAIRS)


def test_item_vectors_put_co_watched_movies_together_and_are_deterministic() -> None:
    data = interaction_matrix(PAIRS)
    ids, vectors = item_vectors(data, CollabConfig(dim=2, min_viewers=1))
    assert ids == ["a", "b", "c", "x", "y", "z"]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(vectors, 1, 2) > 0.99 and abs(cosine(vectors, 1, 4)) < 0.1
    again_ids, again = item_vectors(data, CollabConfig(dim=2, min_viewers=1))
    assert again_ids == ids and np.array_equal(vectors, again)


def test_min_viewers_drops_single_viewer_movies_and_jitter_breaks_exact_ties() -> None:
    data = interaction_matrix([*PAIRS, (1, "solo1"), (1, "solo2")])
    ids, _ = item_vectors(data, CollabConfig(dim=2, min_viewers=2))
    assert "solo1" not in ids and "a" in ids
    ids, vectors = item_vectors(data, CollabConfig(dim=3, min_viewers=1, tie_jitter=3e-3))
    s1, s2 = ids.index("solo1"), ids.index("solo2")
    assert 0.999 < cosine(vectors, s1, s2) < 1.0 - 1e-7  # identical columns, no longer an exact tie


def test_baselines_by_hand() -> None:
    data = interaction_matrix(PAIRS)
    assert baselines.most_popular(data, [1], n=2) == {1: ["x", "y"]}  # 4 viewers each for x; then y, z tie by id
    # a's two nearest are b, c and x's are y, z (cosine 3/sqrt(12) each): four ties, broken by column
    assert baselines.item_knn(data, [7], n=3, k=2) == {7: ["b", "c", "y"]}
    random_a = baselines.random_unseen(data, [1, 4], n=3, seed=5)
    assert random_a == baselines.random_unseen(data, [1, 4], n=3, seed=5)
    assert not set(random_a[1]) & {"a", "b", "c"} and len(random_a[1]) == 3


def test_item_similarity_is_cosine_of_columns() -> None:
    data = interaction_matrix(PAIRS)
    sim = baselines.item_similarity_topk(data.matrix, k=5).toarray()
    a, b, x = data.movies.index("a"), data.movies.index("b"), data.movies.index("x")
    assert sim[a, b] == pytest.approx(3 / np.sqrt(4 * 3))  # a: 4 viewers, b: 3, shared 3
    assert sim[a, x] == pytest.approx(1 / np.sqrt(4 * 4))
    assert sim[a, a] == 0.0


def test_blend_neighbours_weights_and_sums_sources() -> None:
    content = {"h": [("c1", 0.8), ("both", 0.5)]}
    collab = {"h": [("both", 0.6), ("f1", 0.9)]}
    blended = blend_neighbours([(0.5, content), (1.0, collab)])
    assert blended == {"h": [("f1", 0.9), ("both", pytest.approx(0.85)), ("c1", 0.4)]}
    assert blend_neighbours([(0.0, content), (1.0, collab)]) == {"h": [("f1", 0.9), ("both", 0.6)]}


def test_popularity_damping_pushes_blockbusters_down() -> None:
    neighbours = {"h": [("blockbuster", 0.9), ("niche", 0.6)]}
    popularity = [("blockbuster", 1000), ("niche", 3)]
    one = RankConfig(popularity_weight=0.0, damping_slope=0.0, tail_slots=0)  # one damping, one score
    plain = rank([("h", 5)], neighbours, popularity, one)
    damped = rank([("h", 5)], neighbours, popularity, dataclasses.replace(one, popularity_damping=0.3))
    assert [s.movie_id for s in plain][:2] == ["blockbuster", "niche"]
    assert [s.movie_id for s in damped][:2] == ["niche", "blockbuster"]
    assert damped[0].score == pytest.approx(0.6 / 4**0.3)


def test_caching_encoder_encodes_each_text_once(tmp_path) -> None:
    calls: list[list[str]] = []

    class Fake:
        def encode(self, texts, show_progress=False):
            calls.append(list(texts))
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    path = str(tmp_path / "cache.npz")
    first = CachingEncoder(path, Fake).encode(["ab", "abc"])
    again = CachingEncoder(path, Fake)  # a new run: the file is the cache
    second = again.encode(["abc", "ab", "abcd"])
    assert calls == [["ab", "abc"], ["abcd"]]
    assert np.array_equal(second[:2], first[::-1]) and again.hits == 2 and again.misses == 1


def test_blended_vectors_query_every_weighted_source_and_combine_versions() -> None:
    from inference.sources import BlendedVectors

    class Source:
        def __init__(self, version: str, lists: dict, count: int):
            self.version, self.lists, self._count, self.asked = version, lists, count, []

        def neighbours(self, movie_ids, k):
            self.asked.append((list(movie_ids), k))
            return {m: self.lists[m] for m in movie_ids if m in self.lists}

        def count(self) -> int:
            return self._count

    content = Source("c1", {"h": [("a", 0.8)]}, 10)
    collab = Source("f1", {"h": [("a", 0.5), ("b", 0.4)]}, 7)
    unused = Source("u1", {"h": [("z", 1.0)]}, 99)
    store = BlendedVectors([(0.5, content), (1.0, collab), (0.0, unused)])
    assert store.neighbours(["h", "nobody"], 5) == {"h": [("a", pytest.approx(0.9)), ("b", 0.4)]}
    assert content.asked == collab.asked == [(["h", "nobody"], 5)] and unused.asked == []
    assert store.version == "c1+f1" and store.count() == 10
    with pytest.raises(ValueError, match="non-zero weight"):
        BlendedVectors([(0.0, content)])


@pytest.mark.parametrize("config", [CollabConfig(method="als", dim=2, min_viewers=1, regularization=0.01,
                                                 iterations=20),
                                    CollabConfig(method="ease", dim=2, min_viewers=1, ease_lambda=1.0)])
def test_als_and_ease_vectors_put_co_watched_movies_together(config: CollabConfig) -> None:
    data = interaction_matrix(PAIRS)
    ids, vectors = item_vectors(data, config)
    assert ids == ["a", "b", "c", "x", "y", "z"] and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(vectors, 1, 2) > 0.9 and cosine(vectors, 1, 2) > cosine(vectors, 1, 4) + 0.5
    again_ids, again = item_vectors(data, config)
    assert again_ids == ids and np.array_equal(vectors, again)


def test_an_unknown_collab_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        CollabConfig(method="nmf")


def test_mmr_weight_zero_keeps_the_score_order() -> None:
    from inference.diversity import mmr

    vectors = np.eye(3)
    assert mmr(["a", "b", "c"], [0.5, 0.9, 0.5], vectors, 0.0) == ["b", "a", "c"]  # ties: listed first
    assert mmr(["a", "b", "c"], [0.5, 0.9, 0.5], vectors, 0.0, n=2) == ["b", "a"]
    assert mmr([], [], np.zeros((0, 2)), 0.3) == []


def test_mmr_pushes_a_near_duplicate_below_a_different_movie() -> None:
    from inference.diversity import mmr

    ids, scores = ["hit", "hit2", "other", "novector"], [1.0, 0.95, 0.8, 0.0]
    vectors = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [0.0, 0.0]])
    assert mmr(ids, scores, vectors, 0.0) == ["hit", "hit2", "other", "novector"]
    # relevance scaled to 1, 0.95, 0.8, 0: at 0.3 the duplicate loses 0.3 * 0.99 and falls below "other"
    assert mmr(ids, scores, vectors, 0.3) == ["hit", "other", "hit2", "novector"]
    # a zero vector is similar to nothing: at weight 0.9 it beats both redundant ones
    assert mmr(ids, scores, vectors, 0.9)[:3] == ["hit", "other", "novector"]


def test_mmr_refuses_bad_input() -> None:
    from inference.diversity import mmr

    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        mmr(["a"], [1.0], np.eye(1), 1.5)
    with pytest.raises(ValueError, match="one score and one vector row"):
        mmr(["a", "b"], [1.0], np.eye(2), 0.1)


def test_idf_weighting_scales_columns_by_rarity_and_bm25_shrinks_long_rows() -> None:
    from embeddings.collaborative import weighted_matrix

    data = interaction_matrix([(1, "a"), (2, "a"), (3, "a"), (1, "b"), (1, "c"), (2, "c")])
    idf = weighted_matrix(data.matrix, "idf").toarray()
    assert np.allclose(idf[0], [1e-3, np.log(3), np.log(3 / 2)])  # a movie everyone watched keeps a trace
    bm25 = weighted_matrix(data.matrix, "bm25").toarray()
    assert 0 < bm25[0, 0] < bm25[2, 0]  # the same movie counts less in user 1's 3-movie row than in user 3's 1
    assert weighted_matrix(data.matrix, "binary") is data.matrix
    with pytest.raises(ValueError):
        CollabConfig(weighting="tfidf")
