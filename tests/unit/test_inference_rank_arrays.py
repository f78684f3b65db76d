"""`rank_arrays` (NumPy over compact lists) returns exactly the reference `rank`'s list."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from inference.cache import IdTable, NeighbourCache, NeighbourList
from inference.config import RankConfig
from inference.ranking import Scored, normalize_popularity, rank, rank_arrays

MOVIES = [f"m{i:02d}" for i in range(30)]
# A few similarity values only, so equal contributions (ties in score and in "because") are common.
SIMILARITIES = st.sampled_from([0.0, 0.25, 0.5, 0.5, 0.75, 1.0, -0.25])


def assert_same(fast: list[Scored], reference: list[Scored]) -> None:
    assert [(s.movie_id, s.because) for s in fast] == [(s.movie_id, s.because) for s in reference]
    for a, b in zip(fast, reference, strict=True):
        assert math.isclose(a.score, b.score, rel_tol=0, abs_tol=1e-9)


@st.composite
def cases(draw):
    history = draw(st.lists(st.tuples(st.sampled_from(MOVIES), st.sampled_from([None, 1, 2, 3, 4, 5])),
                            max_size=15))
    lists = draw(st.dictionaries(st.sampled_from(MOVIES),
                                 st.lists(st.tuples(st.sampled_from(MOVIES), SIMILARITIES), max_size=8),
                                 max_size=20))
    popular = draw(st.lists(st.tuples(st.sampled_from(MOVIES), st.sampled_from([1, 5, 5, 50, 500])),
                            max_size=12, unique_by=lambda p: p[0]))
    exclude = draw(st.sets(st.sampled_from(MOVIES), max_size=10))
    config = RankConfig(
        n_results=draw(st.sampled_from([1, 3, 5, 20])),
        recency_decay=draw(st.sampled_from([1.0, 0.97, 0.5])),
        popularity_weight=draw(st.sampled_from([0.0, 0.05, 1.0, -0.1])),
        min_similarity=draw(st.sampled_from([0.0, 0.3, -1.0])),
        popularity_damping=draw(st.sampled_from([0.0, 0.0, 0.1, -0.25])),
        rating_weights=draw(st.sampled_from([(-1.0, -0.5, 0.2, 0.7, 1.0), (0.2, 0.3, 0.5, 0.8, 1.0)])),
        similarity_exponent=draw(st.sampled_from([1.0, 1.0, 2.0, 0.5])),
        damping_slope=draw(st.sampled_from([0.0, 0.0, 0.5, 4.0])),
        damping_center=draw(st.sampled_from([0.6, 0.2])),
        tail_slots=draw(st.sampled_from([0, 0, 1, 3, 25])),
        tail_damping=draw(st.sampled_from([0.0, 0.3, -0.25])),
        tail_damping_slope=draw(st.sampled_from([0.0, 4.0])),
        tail_recency_decay=draw(st.sampled_from([0.5, 1.0])),
    )
    return history, lists, popular, exclude, config


@settings(max_examples=400, deadline=None)
@given(cases(), st.booleans())
def test_rank_arrays_equals_the_reference(case, normalized_first) -> None:
    history, pairs, popular, exclude, config = case
    table = IdTable()
    packed = {m: NeighbourList(p, table) for m, p in pairs.items()}
    popularity = normalize_popularity(popular) if normalized_first else popular
    reference = rank(history, packed, popularity, config, exclude=exclude)
    assert_same(rank_arrays(history, packed, popularity, config, exclude=exclude), reference)
    # the float32 similarities are what both see: the reference on the packed lists equals it on floats
    floats = {m: list(v) for m, v in packed.items()}
    assert rank(history, floats, popularity, config, exclude=exclude) == reference


def test_exact_ties_break_by_popularity_then_id_and_the_reason_by_source_id() -> None:
    table = IdTable()
    lists = {"b": NeighbourList([("x", 0.5), ("y", 0.5), ("z", 0.5)], table),
             "a": NeighbourList([("x", 0.5)], table)}
    config = RankConfig(recency_decay=1.0, popularity_weight=0.0)
    history = [("b", 5), ("a", 5)]
    out = rank_arrays(history, lists, [("z", 10), ("y", 10)], config)
    assert [(s.movie_id, s.because) for s in out] == [("x", "a"), ("y", "b"), ("z", "b")]
    assert_same(out, rank(history, lists, [("z", 10), ("y", 10)], config))


def test_the_whole_history_is_excluded_and_negative_affinity_is_pushed_away() -> None:
    table = IdTable()
    lists = {"a": NeighbourList([("x", 0.9), ("old", 0.9)], table), "bad": NeighbourList([("p", 0.9)], table)}
    pushing = RankConfig(rating_weights=(-1.0, -0.5, 0.2, 0.7, 1.0))  # a rating of 1 pushes away
    out = rank_arrays([("a", 5), ("bad", 1)], lists, [("p", 100), ("old", 90), ("q", 80)], pushing,
                      exclude={"old", "a", "bad"})
    assert [s.movie_id for s in out] == ["x", "q"]
    assert out[0].because == "a" and out[1].because is None


def test_lists_over_two_tables_fall_back_to_the_reference() -> None:
    lists = {"a": NeighbourList([("x", 0.9)]), "b": NeighbourList([("y", 0.8)])}  # one table each
    out = rank_arrays([("a", 5), ("b", 5)], lists, [], RankConfig())
    assert [s.movie_id for s in out] == ["x", "y"]


def test_a_cold_history_gets_the_popular_list() -> None:
    assert [s.movie_id for s in rank_arrays([], {}, [("p", 2), ("q", 1)], RankConfig())] == ["p", "q"]


def test_lists_from_a_cache_rank_like_the_reference() -> None:
    cache = NeighbourCache(max_size=10)
    packed = cache.put_many({"a": [("x", 0.3), ("y", 0.2)], "b": [("y", 0.4)]})
    history = [("a", 4), ("b", 5)]
    assert_same(rank_arrays(history, packed, [("x", 3)], RankConfig()),
                rank(history, packed, [("x", 3)], RankConfig()))


def test_a_700_movie_exclusion_checked_on_the_candidates_only_removes_every_watched_movie() -> None:
    """The service ranks the 50 newest and excludes the whole history (a frozenset of the ids): whatever
    the lists and the popular list name, no watched movie comes back, and the answer is the reference's."""
    table = IdTable()
    catalog = [f"movie+{i}" for i in range(1000)]
    watched = catalog[:700]
    history = [(m, 5 if i % 2 else None) for i, m in enumerate(reversed(watched[-50:]))]
    # each ranked movie lists older watches first, then one unseen movie
    lists = {m: NeighbourList([(watched[(i * 7) % 650], 0.9), (watched[(i * 13) % 650], 0.8),
                               (catalog[700 + i], 0.5)], table) for i, (m, _) in enumerate(history)}
    popular = [(m, 1000 - i) for i, m in enumerate(catalog[::7])]  # watched and unseen movies mixed
    exclude = frozenset(watched) | {"never+in+any+list"}
    out = rank_arrays(history, lists, popular, RankConfig(), exclude=exclude)
    assert len(out) == 20 and not {s.movie_id for s in out} & exclude
    assert_same(out, rank(history, lists, popular, RankConfig(), exclude=exclude))
