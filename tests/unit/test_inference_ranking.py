"""The ranking on plain data: rating weights, cold start, exclusions, fill and deterministic ties."""

from __future__ import annotations

import dataclasses
import math

import pytest

from inference.config import RankConfig
from inference.ranking import Scored, normalize_popularity, rank

CONFIG = RankConfig(rating_weights=(-1.0, -0.5, 0.2, 0.7, 1.0), popularity_damping=0.0, damping_slope=0.0,
                    tail_slots=0)
"""Ratings of 1-2 push away (negative weights, the former defaults), no damping and one score (no tail slots):
the semantics under test."""
POPULAR = [("pop1", 500), ("pop2", 400), ("pop3", 300), ("pop4", 200), ("pop5", 100)]


def ids(scored: list[Scored]) -> list[str]:
    return [s.movie_id for s in scored]


def test_no_history_gets_the_popular_list_in_order() -> None:
    assert ids(rank([], {}, POPULAR, CONFIG)) == ["pop1", "pop2", "pop3", "pop4", "pop5"]
    assert all(s.because is None for s in rank([], {}, POPULAR, CONFIG))


def test_cold_start_keeps_popular_order_even_without_a_popularity_weight() -> None:
    config = RankConfig(popularity_weight=0.0)
    assert ids(rank([], {}, POPULAR, config)) == ["pop1", "pop2", "pop3", "pop4", "pop5"]


def test_cold_start_list_is_cut_to_n_results() -> None:
    popular = [(f"m{i:03d}", 1000 - i) for i in range(50)]
    out = rank([], {}, popular, CONFIG)
    assert len(out) == 20
    assert ids(out) == [f"m{i:03d}" for i in range(20)]


def test_unrated_watch_counts_as_three() -> None:
    neighbours = {"a": [("x", 0.9)]}
    unrated = rank([("a", None)], neighbours, {}, CONFIG)
    rated3 = rank([("a", 3)], neighbours, {}, CONFIG)
    assert unrated == rated3
    assert unrated[0].score == pytest.approx(CONFIG.rating_weights[2] * 0.9)


def test_liked_movies_raise_more_than_mild_ones() -> None:
    neighbours = {"liked": [("x", 0.5)], "mild": [("y", 0.5)]}
    out = rank([("mild", 3), ("liked", 5)], neighbours, {}, RankConfig(recency_decay=1.0))
    assert ids(out) == ["x", "y"]
    assert out[0].because == "liked" and out[1].because == "mild"


def test_poorly_rated_movies_neighbours_are_not_recommended_even_if_popular() -> None:
    neighbours = {"bad": [("close_to_bad", 0.95), ("pop1", 0.9)], "good": [("close_to_good", 0.6)]}
    out = rank([("bad", 1), ("good", 4)], neighbours, POPULAR, CONFIG)
    assert "close_to_bad" not in ids(out)
    assert "pop1" not in ids(out)
    assert ids(out)[0] == "close_to_good"
    assert "pop2" in ids(out)


def test_rating_two_pushes_away_a_movie_also_liked_weakly_elsewhere() -> None:
    neighbours = {"bad": [("shared", 0.9)], "ok": [("shared", 0.3), ("other", 0.2)]}
    out = rank([("bad", 2), ("ok", 4)], neighbours, {}, dataclasses.replace(CONFIG, recency_decay=1.0))
    assert ids(out) == ["other"]


def test_seen_movies_are_excluded_from_neighbours_and_fill() -> None:
    neighbours = {"a": [("b", 0.9), ("c", 0.8)], "b": [("a", 0.9), ("pop1", 0.7)]}
    history = [("a", 5), ("b", None), ("pop2", 4)]
    out = ids(rank(history, neighbours, POPULAR, CONFIG))
    assert not {"a", "b", "pop2"} & set(out)
    assert out[:2] == ["c", "pop1"] or out[:2] == ["pop1", "c"]


def test_several_history_movies_add_up_and_the_biggest_contributor_is_the_reason() -> None:
    neighbours = {"h1": [("x", 0.5), ("y", 0.9)], "h2": [("x", 0.6)]}
    config = RankConfig(recency_decay=1.0, popularity_weight=0.0)
    out = rank([("h1", 5), ("h2", 5)], neighbours, {}, config)
    assert ids(out) == ["x", "y"]
    assert out[0].score == pytest.approx(1.1)
    assert out[0].because == "h2"
    assert out[1].because == "h1"


def test_recency_decay_favours_recent_history() -> None:
    neighbours = {"new": [("from_new", 0.5)], "old": [("from_old", 0.5)]}
    out = rank([("new", 4), ("old", 4)], neighbours, {}, RankConfig(recency_decay=0.5))
    assert ids(out) == ["from_new", "from_old"]


def test_list_is_filled_to_twenty_from_popular_after_personal_ones() -> None:
    neighbours = {"h": [("n1", 0.9), ("n2", 0.8)]}
    popular = [(f"p{i:02d}", 100 - i) for i in range(40)]
    out = rank([("h", 5)], neighbours, popular, CONFIG)
    assert len(out) == 20
    assert len(set(ids(out))) == 20
    assert ids(out)[:2] == ["n1", "n2"]
    assert ids(out)[2:] == [f"p{i:02d}" for i in range(18)]
    assert [s.score for s in out] == sorted((s.score for s in out), reverse=True)


def test_popularity_blend_breaks_near_ties_between_neighbours() -> None:
    neighbours = {"h": [("niche", 0.800), ("hit", 0.799)]}
    out = rank([("h", 5)], neighbours, {"hit": 10_000, "niche": 1}, CONFIG)
    assert ids(out) == ["hit", "niche"]


def test_exact_ties_break_by_movie_id_and_do_not_depend_on_input_order() -> None:
    config = RankConfig(popularity_weight=0.0)
    a = rank([("h", 4)], {"h": [("zeta", 0.5), ("alpha", 0.5), ("mid", 0.5)]}, {}, config)
    b = rank([("h", 4)], {"h": [("mid", 0.5), ("zeta", 0.5), ("alpha", 0.5)]}, {}, config)
    assert ids(a) == ids(b) == ["alpha", "mid", "zeta"]


def test_reason_ties_break_by_history_id() -> None:
    config = RankConfig(recency_decay=1.0)
    out = rank([("hb", 4), ("ha", 4)], {"hb": [("x", 0.5)], "ha": [("x", 0.5)]}, {}, config)
    assert out[0].because == "ha"


def test_duplicate_history_entries_count_once_at_the_most_recent_position() -> None:
    neighbours = {"a": [("x", 0.5)]}
    once = rank([("a", 4)], neighbours, {}, CONFIG)
    twice = rank([("a", 4), ("a", 1)], neighbours, {}, CONFIG)
    assert once == twice


def test_min_similarity_drops_weak_neighbours() -> None:
    out = rank([("h", 5)], {"h": [("weak", 0.1), ("strong", 0.6)]}, {}, RankConfig(min_similarity=0.2))
    assert ids(out) == ["strong"]


def test_results_are_unique_even_when_a_movie_is_neighbour_and_popular() -> None:
    out = rank([("h", 5)], {"h": [("pop3", 0.9)]}, POPULAR, CONFIG)
    assert ids(out)[0] == "pop3"
    assert len(ids(out)) == len(set(ids(out))) == 5


@pytest.mark.parametrize("popularity", [
    {"a": 100, "b": 10, "c": 0},
    [("a", 100), ("b", 10), ("c", 0)],
])
def test_popularity_counts_are_log_scaled_into_zero_one(popularity) -> None:
    norm = normalize_popularity(popularity)
    assert norm["a"] == 1.0
    assert norm["b"] == pytest.approx(math.log1p(10) / math.log1p(100))
    assert norm["c"] == 0.0


def test_popularity_as_an_ordered_list_of_ids() -> None:
    norm = normalize_popularity(["a", "b", "c", "d"])
    assert norm == {"a": 1.0, "b": 0.75, "c": 0.5, "d": 0.25}
    assert ids(rank([], {}, ["a", "b", "c"], CONFIG)) == ["a", "b", "c"]


def test_rating_weight_lookup_clamps_and_rounds() -> None:
    assert CONFIG.weight_of(None) == CONFIG.rating_weights[2]
    assert CONFIG.weight_of(5) == CONFIG.rating_weights[4]
    assert CONFIG.weight_of(9) == CONFIG.rating_weights[4]
    assert CONFIG.weight_of(0) == CONFIG.rating_weights[0]
    assert CONFIG.weight_of(1) < 0 and CONFIG.weight_of(2) < 0 < CONFIG.weight_of(3) < CONFIG.weight_of(4)


def test_rank_config_from_env_reads_overrides_and_rejects_bad_values() -> None:
    config = RankConfig.from_env({"RANK_RATING_WEIGHTS": "-2,-1,0,1,2", "RANK_POPULARITY_WEIGHT": "0.5"})
    assert config.rating_weights == (-2.0, -1.0, 0.0, 1.0, 2.0)
    assert config.popularity_weight == 0.5
    with pytest.raises(ValueError, match="RANK_RATING_WEIGHTS"):
        RankConfig.from_env({"RANK_RATING_WEIGHTS": "1,2"})
    with pytest.raises(ValueError, match="RANK_N_RESULTS"):
        RankConfig.from_env({"RANK_N_RESULTS": "many"})


def test_normalized_popularity_is_ordered_and_reused_as_is() -> None:
    norm = normalize_popularity({"b": 10, "a": 10, "c": 100})
    assert list(norm) == ["c", "a", "b"]
    assert normalize_popularity(norm) is norm
    assert rank([], {}, norm, CONFIG) == rank([], {}, {"b": 10, "a": 10, "c": 100}, CONFIG)


def test_popular_fill_skips_pushed_away_and_seen_movies_beyond_the_first_twenty() -> None:
    popular = [(f"p{i:02d}", 100 - i) for i in range(30)]
    neighbours = {"bad": [(f"p{i:02d}", 0.9) for i in range(5)]}
    out = ids(rank([("bad", 1), ("p05", None)], neighbours, popular, CONFIG))
    assert out == [f"p{i:02d}" for i in range(6, 26)]


def test_damping_sees_viewer_counts_whether_or_not_the_popular_list_was_normalized_first() -> None:
    """The service normalizes its popular list once per reload and the gate passes raw counts: with a
    non-zero popularity damping both must rank alike (the damping divides by viewers, not by [0, 1])."""
    from inference.ranking import normalize_popularity

    popular = [("blockbuster", 5000), ("niche", 3), ("mid", 200)]
    neighbours = {"h": [("blockbuster", 0.9), ("niche", 0.6), ("mid", 0.7)]}
    config = RankConfig(popularity_damping=0.3)
    raw = rank([("h", 5)], neighbours, popular, config)
    normalized = rank([("h", 5)], neighbours, normalize_popularity(popular), config)
    assert raw == normalized
    assert raw[0].movie_id == "niche"  # 0.6 / 4**0.3 beats 0.9 / 5001**0.3: the counts were used


def test_negative_damping_lifts_the_more_watched_of_two_equally_close_movies() -> None:
    neighbours = {"h": [("niche", 0.5), ("known", 0.5)]}
    popularity = [("known", 99), ("niche", 3)]
    config = RankConfig(popularity_weight=0.0, popularity_damping=-0.25, damping_slope=0.0, tail_slots=0)
    out = rank([("h", 5)], neighbours, popularity, config)
    assert ids(out) == ["known", "niche"]
    assert math.isclose(out[0].score, 0.5 * 100 ** 0.25) and math.isclose(out[1].score, 0.5 * 4 ** 0.25)


def test_similarity_exponent_favours_one_close_neighbour_over_two_loose_ones() -> None:
    neighbours = {"a": [("close", 0.9), ("loose", 0.5)], "b": [("loose", 0.5)]}
    config = RankConfig(recency_decay=1.0, popularity_weight=0.0, popularity_damping=0.0)
    assert ids(rank([("a", 5), ("b", 5)], neighbours, {}, config)) == ["loose", "close"]
    sharp = dataclasses.replace(config, similarity_exponent=3.0)
    assert ids(rank([("a", 5), ("b", 5)], neighbours, {}, sharp)) == ["close", "loose"]


def test_personal_damping_gives_a_mainstream_history_the_popular_movie_and_a_niche_one_the_tail() -> None:
    """damping_slope: the same neighbour lists rank the blockbuster first for a user whose history is
    popular and the niche movie first for a user whose history is in the tail (RankConfig.damping_slope)."""
    popularity = [("blockbuster", 5000), ("hit1", 4000), ("hit2", 3000), ("niche", 3), ("rare1", 1), ("rare2", 1)]
    neighbours = {m: [("blockbuster", 0.5), ("niche", 0.5)] for m in ("hit1", "hit2", "rare1", "rare2")}
    config = RankConfig(popularity_weight=0.0, popularity_damping=0.0, damping_slope=2.0, damping_center=0.5,
                        tail_slots=0)
    mainstream = rank([("hit1", 5), ("hit2", 5)], neighbours, popularity, config)
    niche = rank([("rare1", 5), ("rare2", 5)], neighbours, popularity, config)
    assert ids(mainstream)[:2] == ["blockbuster", "niche"] and ids(niche)[:2] == ["niche", "blockbuster"]
    flat = dataclasses.replace(config, damping_slope=0.0)  # no slope: both get the same order (a tie: by popularity)
    assert ids(rank([("rare1", 5), ("rare2", 5)], neighbours, popularity, flat))[:2] == ["blockbuster", "niche"]


def test_tail_slots_keep_the_head_and_fill_the_last_places_from_the_tail_score() -> None:
    """tail_slots: the first n - t places are the one-score list; the last t are the best movies not yet
    listed by the tail config's score (here a damping that favours the least watched)."""
    popular = [(f"p{i}", 1000 - 100 * i) for i in range(5)] + [("t1", 2), ("t2", 1)]
    neighbours = {"h": [("p1", 0.9), ("p2", 0.8), ("p3", 0.7), ("t1", 0.3), ("t2", 0.25)]}
    single = RankConfig(n_results=4, popularity_weight=0.0, popularity_damping=0.0, damping_slope=0.0,
                        tail_slots=0)
    mixed = dataclasses.replace(single, tail_slots=2, tail_damping=1.0, tail_damping_slope=0.0)
    head = rank([("h", 5)], neighbours, popular, single)
    out = rank([("h", 5)], neighbours, popular, mixed)
    assert ids(head) == ["p1", "p2", "p3", "t1"]
    assert ids(out) == ["p1", "p2", "t2", "t1"]  # t2: 0.25 / 2 beats t1: 0.3 / 3 under the tail damping
    assert out[2].because == "h"


def test_a_version_recorded_before_the_switches_is_ranked_with_them_off() -> None:
    """RankConfig.from_record: an old record (no damping_slope, no tail_slots) keeps one score and one
    damping whatever the defaults are; a record naming them keeps its values; no record: the defaults."""
    base = RankConfig(damping_slope=0.5, tail_slots=3)
    old = RankConfig.from_record({"popularity_damping": -0.25}, base)
    assert (old.damping_slope, old.tail_slots, old.popularity_damping) == (0.0, 0, -0.25)
    new = RankConfig.from_record({"damping_slope": 0.5, "tail_slots": 3}, base)
    assert (new.damping_slope, new.tail_slots) == (0.5, 3)
    assert RankConfig.from_record(None, base) == base
