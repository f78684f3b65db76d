"""The gate's pure parts: the temporal holdout, the lists' metrics, the decision."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from evaluation import gate

T0 = datetime(2020, 1, 1)


def event(user: int, movie: str, day: int, rating: int | None = None, watched: bool = True) -> gate.Event:
    at = T0 + timedelta(days=day)
    return (user, movie, at, at + timedelta(hours=1), rating, watched)


def test_each_user_holds_out_the_most_recent_fifth_of_distinct_movies_at_least_one():
    events = [event(1, f"m{i}", i) for i in range(10)] + [event(2, "a", 0), event(2, "b", 1)] + [event(3, "x", 0)]
    split = gate.temporal_split(events, gate.GateConfig(holdout_fraction=0.2))
    assert split.held_out == {1: ["m8", "m9"], 2: ["b"]}
    assert split.users == [1, 2]
    held_in = {(e[0], e[1]) for e in split.held_in}
    assert (1, "m7") in held_in and (1, "m8") not in held_in and (3, "x") in held_in
    assert split.stats["eligible_users"] == 2


def test_events_after_the_watermark_take_no_part_so_a_grown_store_gives_the_same_split():
    base = [event(1, f"m{i}", i) for i in range(5)]
    later = [event(1, "late", 30), event(9, "new", 31), event(9, "new2", 32)]
    config = gate.GateConfig()
    until = T0 + timedelta(days=10)
    assert gate.temporal_split(base, config, until) == gate.temporal_split(base + later, config, until)


def test_the_user_sample_is_seeded_and_bounded():
    events = [event(u, f"m{i}", i) for u in range(50) for i in range(3)]
    a = gate.temporal_split(events, gate.GateConfig(max_users=10, seed=1))
    b = gate.temporal_split(events, gate.GateConfig(max_users=10, seed=1))
    c = gate.temporal_split(events, gate.GateConfig(max_users=10, seed=2))
    assert a.users == b.users and len(a.users) == 10 and a.users != c.users


def test_histories_are_most_recent_first_cut_to_the_limit_and_exclusion_is_everything():
    held_in = [event(1, "old", 0, 5), event(1, "mid", 1), event(1, "new", 2, 2)]
    ordered, seen = gate.histories(held_in, [1], limit=2)
    assert ordered[1] == [("new", 2), ("mid", None)]
    assert seen[1] == {"old", "mid", "new"}


def test_popular_counts_viewers_of_watched_rows_only_ties_by_id():
    held_in = [event(1, "b", 0), event(2, "b", 0), event(1, "a", 0), event(3, "c", 0), event(2, "z", 0, 5, False)]
    assert gate.popular(held_in, 10) == [("b", 2), ("a", 1), ("c", 1)]


def test_score_lists_by_hand():
    held_out = {1: ["x", "y"], 2: ["q"], 3: ["r"]}
    recs = {1: ["x", "a", "y"], 2: ["a"] * 10 + ["q"], 3: []}
    report = gate.score_lists(recs, held_out, store_movies=10)
    # user 1: 2 of min(20, 2); user 2: 1 of 1; user 3: 0 -> (1 + 1 + 0) / 3
    assert report["hit_rate_at_20"] == pytest.approx(2 / 3, abs=1e-6)
    # at 10: user 1 both (2/2), user 2 its hit is 11th (0) -> 1/3
    assert report["hit_rate_at_10"] == pytest.approx(1 / 3, abs=1e-6)
    assert report["user_hit_rate_at_20"] == pytest.approx(2 / 3, abs=1e-6)
    assert report["mrr"] == pytest.approx((1 + 1 / 11 + 0) / 3, abs=1e-6)
    assert report["coverage_global"] == pytest.approx(4 / 10)
    assert report["users"] == 3 and report["held_out"] == 4
    assert report["hit_rate_at_20_se"] > 0


def test_rank_lists_never_return_a_held_in_movie_even_beyond_the_ranked_history():
    held_in = [event(1, f"h{i}", i) for i in range(60)]
    ordered, seen = gate.histories(held_in, [1], limit=50)
    neighbours = {f"h{i}": [("h0", 0.99), ("fresh", 0.5)] for i in range(60)}
    lists = gate.rank_lists(ordered, seen, neighbours, [("h1", 9), ("pop", 5)], _rank())
    assert lists[1][:2] == ["fresh", "pop"]
    assert not set(lists[1]) & seen[1]


def _rank():
    from inference.config import RankConfig

    return RankConfig()


@pytest.mark.parametrize(("ours", "pop", "active", "promote", "words"), [
    (0.20, 0.10, None, True, "beats most popular"),
    (0.09, 0.10, None, False, "does not beat most popular"),
    (0.20, 0.10, 0.205, True, "active version"),
    (0.18, 0.10, 0.20, False, "below the active version"),
])
def test_the_gate_rule(ours, pop, active, promote, words):
    def figures(rate):
        return {"hit_rate_at_20": rate, "users": 10}

    ok, reason = gate.decide(figures(ours), figures(pop), None if active is None else figures(active), 0.01)
    assert ok is promote and words in reason


def test_no_scorable_user_is_a_rejection_with_the_reason():
    ok, reason = gate.decide({"hit_rate_at_20": 0.0, "users": 0}, {"hit_rate_at_20": 0.0}, None, 0.01)
    assert not ok and "no user could be scored" in reason


@pytest.mark.parametrize("kwargs", [{"holdout_fraction": 0.0}, {"holdout_fraction": 1.0}, {"min_movies": 1},
                                    {"max_users": 0}, {"tolerance": -0.1}])
def test_bad_gate_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        gate.GateConfig(**kwargs)


def test_per_user_hits_count_found_over_min_k_and_held_out() -> None:
    held_out = {1: ["a", "b"], 2: ["c"]}
    assert gate.per_user_hits({1: ["a", "x"], 2: ["y"]}, held_out) == [0.5, 0.0]
    assert gate.per_user_hits({1: ["x", "b"]}, held_out, k=1) == [0.0, 0.0]


def test_cold_movie_targets_keep_held_out_movies_with_few_held_in_viewers() -> None:
    held_in = [event(u, "pop", 1) for u in range(1, 7)] + [event(1, "rare", 1), event(2, "rare", 2)]
    split = gate.TemporalSplit(held_in, {1: ["pop", "rare"], 2: ["pop"], 3: ["new"]}, [1, 2, 3])
    assert gate.cold_movie_targets(split) == {1: ["rare"], 3: ["new"]}


def test_a_version_recorded_before_the_weighting_is_refitted_on_the_binary_matrix() -> None:
    """A recipe is decoded as it was fitted: the matrix weighting's default changed to idf after versions
    were recorded without the field, and the gate must refit those as binary."""
    from db_utils.model_versions import VersionRow

    def row(collab: dict) -> VersionRow:
        return VersionRow(id=1, status="active", reason=None, created_at=datetime(2026, 1, 1), activated_at=None,
                          content_collection="movies", collab_collection="movies_cf_v1", rank_config={},
                          collab_config=collab)

    assert gate.Recipe.from_version(row({"dim": 64, "method": "svd"})).collab.weighting == "binary"
    assert gate.Recipe.from_version(row({"dim": 64, "weighting": "idf", "gone": 1})).collab.weighting == "idf"
