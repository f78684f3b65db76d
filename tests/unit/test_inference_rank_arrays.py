"""`rank_arrays` (NumPy over compact lists) returns exactly the reference `rank`'s list."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import ranking
from inference.cache import IdTable, NeighbourCache, NeighbourList
from inference.config import RankConfig
from inference.ranking import Scored, normalize_popularity, rank, rank_arrays

MOVIES = [f"m{i:02d}" for i in range(30)]
# A few similarity values only, so equal contributions (ties in score and in "because") are common.
SIMILARITIES = st.sampled_from([0.0, 0.25, 0.5, 0.5, 0.75, 1.0, -0.25])


@pytest.fixture(autouse=True, scope="module")
def _arrays_for_every_size():
    """Every case here goes through the NumPy path: the small-input shortcut to `rank` would make the
    comparison with the reference true by construction."""
    saved = ranking.SMALL_PAIRS
    ranking.SMALL_PAIRS = -1
    yield
    ranking.SMALL_PAIRS = saved


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


@settings(max_examples=150, deadline=None)
@given(cases())
def test_without_reasons_the_list_and_scores_are_the_same(case) -> None:
    """The plain-text answer skips the "because" work: same ids and scores, every reason None."""
    history, pairs, popular, exclude, config = case
    table = IdTable()
    packed = {m: NeighbourList(p, table) for m, p in pairs.items()}
    full = rank_arrays(history, packed, popular, config, exclude=exclude)
    bare = rank_arrays(history, packed, popular, config, exclude=exclude, reasons=False)
    assert [(s.movie_id, s.score) for s in bare] == [(s.movie_id, s.score) for s in full]
    assert all(s.because is None for s in bare)


def test_a_popular_list_seen_twice_over_a_growing_table_ranks_like_the_reference() -> None:
    """The popular list's arrays are made once per table and extended when lists add ids: a list fetched
    after the first request is scored with the popularity and damping of its ids."""
    cache = NeighbourCache(max_size=10)
    popular = normalize_popularity([("late", 500), ("x", 3), ("p", 2)])
    config = RankConfig(popularity_damping=-0.25)
    first = cache.put_many({"a": [("x", 0.3)]})
    assert_same(rank_arrays([("a", 4)], first, popular, config), rank([("a", 4)], first, popular, config))
    later = {**first, **cache.put_many({"b": [("late", 0.2), ("new", 0.9)]})}
    history = [("b", 5), ("a", 4)]
    out = rank_arrays(history, later, popular, config)
    assert_same(out, rank(history, later, popular, config))
    assert {"late", "new"} <= {s.movie_id for s in out}


def test_few_pairs_go_to_the_reference_and_many_to_the_arrays(monkeypatch) -> None:
    """The shortcut is a pure speed choice: below SMALL_PAIRS the reference ranks, above it the arrays."""
    monkeypatch.setattr(ranking, "SMALL_PAIRS", 2)
    calls: list[int] = []
    reference = ranking.rank
    monkeypatch.setattr(ranking, "rank", lambda *a, **k: calls.append(1) or reference(*a, **k))
    table = IdTable()
    lists = {"a": NeighbourList([("x", 0.5), ("y", 0.4)], table), "b": NeighbourList([("z", 0.3)], table)}
    one = RankConfig(tail_slots=0)  # one pass (the tail slots rank twice)
    rank_arrays([("a", 5)], lists, [], one)
    assert calls == [1]
    rank_arrays([("a", 5), ("b", 4)], lists, [], one)
    assert calls == [1]


def test_the_popular_arrays_count_in_the_cache_bytes_and_at_most_two_lists_are_held() -> None:
    """Each popular list ranked against a cache leaves arrays on its id table: counted in `nbytes` (so in
    the byte bound, /ready and /metrics), and a refreshed list replaces the older ones instead of piling up."""
    cache = NeighbourCache(max_size=100)
    lists = cache.put_many({f"h{i}": [(f"c{i}_{j}", 0.5) for j in range(20)] for i in range(10)})
    history = [(f"h{i}", 4) for i in range(10)]
    before = cache.nbytes
    config = RankConfig(popularity_damping=-0.25)
    held = []
    for refresh in range(6):
        popular = normalize_popularity([(f"p{refresh}_{j}", 100 - j) for j in range(50)])
        assert_same(rank_arrays(history, lists, popular, config), rank(history, lists, popular, config))
        held.append(cache.nbytes)
    assert len(cache.table.memo) <= 2
    assert held[0] > before


def test_a_tail_slot_names_the_source_of_its_own_score() -> None:
    """The head and the tail weigh the history with their own recency: a movie listed by the tail names
    the source that contributes most to the tail's score, not to the head's."""
    table = IdTable()
    lists = {"new": NeighbourList([("t", 0.5)], table), "old": NeighbourList([("t", 0.6)], table)}
    history = [("new", 5), ("old", 5)]
    config = RankConfig(n_results=1, tail_slots=1, recency_decay=1.0, tail_recency_decay=0.1,
                        popularity_damping=0.0, damping_slope=0.0, tail_damping=0.0, tail_damping_slope=0.0)
    out = rank_arrays(history, lists, [], config)
    assert [(s.movie_id, s.because) for s in out] == [("t", "new")]
    assert_same(out, rank(history, lists, [], config))
    head_only = RankConfig(n_results=1, tail_slots=0, recency_decay=1.0, popularity_damping=0.0, damping_slope=0.0)
    assert rank_arrays(history, lists, [], head_only)[0].because == "old"


@settings(max_examples=400, deadline=None)
@given(cases(), st.booleans())
def test_the_popular_answer_equals_the_reference_without_neighbours(case, normalized_first) -> None:
    """A user without neighbour lists (new, no vectors, a failing store) gets `rank`'s list with no
    neighbours: the same ids, order and scores, ties and tail slots included."""
    history, _, popular, exclude, config = case
    popularity = normalize_popularity(popular) if normalized_first else popular
    reference = rank(history, {}, popularity, config, exclude=exclude)
    assert_same(ranking.rank_popular(history, popularity, config, exclude=exclude), reference)
    assert rank_arrays(history, {}, popularity, config, exclude=exclude) == reference


def test_the_popular_answer_skips_every_seen_movie_and_stops_at_n() -> None:
    popular = [(f"p{i}", 100 - i) for i in range(30)]
    config = RankConfig(n_results=5, tail_slots=2)
    out = ranking.rank_popular([("p0", 5), ("p2", None)], popular, config, exclude={"p1", "p4"})
    assert [s.movie_id for s in out] == ["p3", "p5", "p6", "p7", "p8"]
    assert all(s.because is None for s in out)
    assert [s.score for s in out] == sorted((s.score for s in out), reverse=True)
