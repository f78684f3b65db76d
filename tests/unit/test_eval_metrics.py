"""Offline metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from evaluation import metrics
from evaluation.metrics import Interaction


def test_hit_ndcg_and_reciprocal_rank_by_hand() -> None:
    recs = ["a", "b", "c", "d"]
    assert metrics.hit_at_k(recs, "c", 3) == 1.0
    assert metrics.hit_at_k(recs, "d", 3) == 0.0
    assert metrics.ndcg_at_k(recs, "a", 20) == 1.0
    assert metrics.ndcg_at_k(recs, "c", 20) == pytest.approx(1 / math.log2(4))  # rank 3 -> 0.5
    assert metrics.ndcg_at_k(recs, "d", 3) == 0.0
    assert metrics.reciprocal_rank(recs, "b") == 0.5
    assert metrics.reciprocal_rank(recs, "z") == 0.0


def test_coverage_counts_only_the_universe() -> None:
    lists = [["a", "b"], ["b", "x"], []]
    assert metrics.coverage(lists, ["a", "b", "c", "d"]) == 0.5
    assert metrics.coverage(lists, []) == 0.0


@pytest.mark.parametrize(("length", "label"), [(0, "<1"), (1, "1-19"), (19, "1-19"), (20, "20-49"),
                                                (499, "200-499"), (500, "500+"), (10_000, "500+")])
def test_history_buckets(length: int, label: str) -> None:
    assert metrics.history_bucket(length) == label


def test_leave_last_out_holds_out_latest_ties_by_id_and_excludes_single_movie_users() -> None:
    rows = [
        Interaction(1, "a", 1), Interaction(1, "b", 5), Interaction(1, "c", 5), Interaction(1, "a", 2),
        Interaction(2, "x", 3), Interaction(2, "x", 9),  # one distinct movie watched twice: excluded
        Interaction(3, "p", 7), Interaction(3, "q", 2), Interaction(3, "q", 8),  # q's latest event wins
        Interaction(4, "only", 1),
    ]
    split = metrics.leave_last_out(rows)
    assert split.held_out == {1: "c", 3: "q"}  # user 1: b and c tie at 5 -> larger id
    assert split.excluded_users == (2, 4)
    assert [(r.user_id, r.movie_id) for r in split.held_in] == [
        (1, "a"), (1, "b"), (1, "a"), (2, "x"), (2, "x"), (3, "p"), (4, "only")]


def test_validation_split_drops_the_last_movie_and_holds_out_the_one_before() -> None:
    rows = [Interaction(1, "a", 1), Interaction(1, "b", 2), Interaction(1, "c", 3), Interaction(1, "b", 4),
            Interaction(2, "x", 1), Interaction(2, "y", 2)]
    split = metrics.leave_last_out(rows, skip_last=1)
    # user 1's order by latest event: a(1), c(3), b(4): b dropped, c held out, a held in
    assert split.held_out == {1: "c"} and split.excluded_users == (2,)
    assert [(r.user_id, r.movie_id) for r in split.held_in] == [(1, "a"), (2, "x"), (2, "y")]


def test_summarize_by_hand() -> None:
    held_out = {1: "a", 2: "b", 3: "c", 4: "d"}
    recs = {
        1: ["a"] + [f"f{i}" for i in range(19)],  # rank 1
        2: [f"g{i}" for i in range(14)] + ["b"],  # rank 15: a hit at 20, not at 10
        3: ["x", "y"],  # miss
        # user 4 got nothing: counts as a miss
    }
    report = metrics.summarize(recs, held_out, store_movies=["a", "b", "x", "z"], catalog=[f"m{i}" for i in range(96)]
                               + ["a", "b", "x", "y"], history_lengths={1: 1, 2: 25, 3: 30, 4: 600},
                               excluded_users=2)
    assert report["users"] == 4 and report["users_excluded"] == 2
    assert report["hit_rate_at_20"] == 0.5
    assert report["hit_rate_at_10"] == 0.25
    assert report["ndcg_at_20"] == pytest.approx((1 + 1 / math.log2(16)) / 4)
    assert report["mrr"] == pytest.approx((1 + 1 / 15) / 4)
    assert report["coverage_local"] == 0.75  # a, b, x of a, b, x, z
    assert report["coverage_global"] == pytest.approx(4 / 100)  # a, b, x, y
    buckets = report["by_history_length"]
    assert list(buckets) == ["1-19", "20-49", "500+"]
    assert buckets["1-19"]["hit_rate_at_20"] == 1.0 and buckets["1-19"]["users"] == 1
    assert buckets["20-49"]["users"] == 2 and buckets["20-49"]["hit_rate_at_20"] == 0.5
    assert buckets["500+"]["hit_rate_at_20"] == 0.0


def test_popularity_bias() -> None:
    viewers = {f"m{i}": 100 - i for i in range(100)}  # top 1% = m0 only
    bias = metrics.popularity_bias([["m0", "m99"], ["m0", "m50"]], viewers)
    assert bias["share_top_1pct"] == 0.5
    assert bias["mean_viewers"] == pytest.approx((100 + 1 + 100 + 50) / 4)


def test_markdown_table_formats_rates_as_percentages() -> None:
    table = metrics.markdown_table({"ours": {"users": 3, "hit_rate_at_20": 0.125, "mrr": 0.05}},
                                   columns=("users", "hit_rate_at_20", "mrr"))
    assert table.splitlines()[2] == "| ours | 3 | 12.5% | 0.050 |"
