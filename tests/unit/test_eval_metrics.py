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


def test_standard_errors_are_the_sem_over_users() -> None:
    held_out = {1: "a", 2: "b", 3: "c", 4: "d"}
    recs = {1: ["a"], 2: ["x"], 3: ["x"], 4: ["x", "d"]}  # hits 1, 0, 0, 1; reciprocal ranks 1, 0, 0, 0.5
    se = metrics.standard_errors(recs, held_out)
    assert se["hit_rate_at_20"] == pytest.approx(math.sqrt(1 / 3) / 2)  # sd (ddof 1) of 1,0,0,1 / sqrt(4)
    rr = [1.0, 0.0, 0.0, 0.5]
    mean = sum(rr) / 4
    assert se["mrr"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in rr) / 3) / 2)
    assert metrics.standard_errors(recs, {1: "a"}) == {k: 0.0 for k in se}


def test_paired_test_is_mcnemar_exact_on_discordant_users() -> None:
    users = list(range(20))
    held_out = {u: f"m{u}" for u in users}
    a = {u: [f"m{u}"] if u < 10 else [] for u in users}  # A hits users 0-9
    b = {u: [f"m{u}"] if u in (0, 1, 10) else [] for u in users}  # B hits 0, 1 and 10
    test = metrics.paired_test(a, b, held_out)
    assert (test.only_a, test.only_b, test.users) == (8, 1, 20)
    assert test.p_value == pytest.approx(2 * (1 + 9) / 2**9)  # two-sided binomial, 8 of 9 discordant
    assert test.difference == pytest.approx(7 / 20) and test.hit_rate_a == 0.5 and test.hit_rate_b == 0.15
    assert test.ci_low < test.difference < test.ci_high and test.ci_low > 0
    same = metrics.paired_test(a, a, held_out)
    assert (same.p_value, same.difference, same.ci_low, same.ci_high) == (1.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="at least one user"):
        metrics.paired_test(a, b, {})
    with pytest.raises(ValueError, match="confidence"):
        metrics.paired_test(a, b, held_out, confidence=1.0)


def test_cold_start_buckets_by_history_length_and_movie_viewers() -> None:
    held_out = {1: "a", 2: "b", 3: "c", 4: "d", 5: "e"}
    lengths = {1: 1, 2: 3, 3: 4, 4: 10, 5: 30}
    viewers = {"a": 1, "b": 50, "c": 4, "d": 5}  # e: no held-in viewer at all
    recs = {1: ["a"], 2: ["x"], 3: ["c"], 5: ["e"]}
    buckets = metrics.cold_start(recs, held_out, lengths, viewers)
    assert buckets["users_1"] == {"users": 1, "hit_rate_at_20": 1.0}
    assert buckets["users_2-4"] == {"users": 2, "hit_rate_at_20": 0.5}
    assert buckets["users_5-19"] == {"users": 1, "hit_rate_at_20": 0.0}
    assert buckets["movies_under_5_viewers"] == {"users": 3, "hit_rate_at_20": 1.0}  # a, c, e
    assert metrics.cold_start({}, {}, {}, {})["users_1"] == {"users": 0, "hit_rate_at_20": 0.0}


def test_last_fraction_out_holds_out_each_users_latest_fifth() -> None:
    rows = [Interaction(1, f"m{i}", i) for i in range(10)]  # 10 movies: the last 2 out
    rows += [Interaction(1, "m0", 20)]  # a late re-watch makes m0 the latest
    rows += [Interaction(2, "p", 1), Interaction(2, "q", 1)]  # 2 movies, one time: 1 out, the larger id
    rows += [Interaction(3, "only", 1)]
    split = metrics.last_fraction_out(rows)
    assert split.held_out == {1: ("m9", "m0"), 2: ("q",)}
    assert split.excluded_users == (3,)
    assert not [r for r in split.held_in if (r.user_id, r.movie_id) in {(1, "m0"), (1, "m9"), (2, "q")}]
    assert len(split.held_in) == 8 + 1 + 1
    with pytest.raises(ValueError, match="fraction"):
        metrics.last_fraction_out(rows, 1.0)


def test_recall_and_fraction_summary_by_hand() -> None:
    assert metrics.recall_at_k(["a", "b", "c"], {"b", "z"}, 2) == 0.5
    assert metrics.recall_at_k(["a"], set(), 20) == 0.0
    held_out = {1: ("a", "b"), 2: ("c",)}
    recs = {1: ["b"] + [f"x{i}" for i in range(19)], 2: ["x"] * 10 + ["c"]}
    report = metrics.summarize_fraction(recs, held_out, catalog=["a", "b", "c", "x"])
    assert report["hit_rate_at_20"] == 1.0 and report["hit_rate_at_10"] == 0.5
    assert report["recall_at_20"] == pytest.approx((0.5 + 1.0) / 2)
    assert report["coverage_global"] == 0.75 and report["users"] == 2


def test_paired_rates_difference_interval_and_direction() -> None:
    a = [1.0, 0.5, 0.5, 0.0, 1.0, 0.5]
    b = [0.5, 0.5, 0.0, 0.0, 0.5, 0.0]
    out = metrics.paired_rates(a, b)
    assert out["users"] == 6 and out["better"] == 4 and out["worse"] == 0
    assert math.isclose(out["difference"], 2.0 / 6) and out["ci_low"] < out["difference"] < out["ci_high"]
    assert 0 < out["wilcoxon_p"] < 0.2
    same = metrics.paired_rates([0.5, 0.5], [0.5, 0.5])
    assert same["difference"] == 0 and same["wilcoxon_p"] == 1.0
    with pytest.raises(ValueError):
        metrics.paired_rates([1.0], [])
