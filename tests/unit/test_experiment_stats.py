"""evaluation.experiments.stats on plain counts: textbook values, SRM, MDE, bootstrap, the canary rule."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from evaluation.experiments import stats

# Newcomb (1998), "Interval estimation for the difference between independent proportions", Statistics
# in Medicine 17, Table II, example (a): 56/70 against 48/80, difference 0.2.
X1, N1, X2, N2 = 56, 70, 48, 80


def test_textbook_z_test_and_wald_interval():
    """By hand: pooled p = 104/150; se0 = sqrt(p(1-p)(1/70 + 1/80)) = 0.075467, z = 0.2/se0 = 2.6502,
    two-sided p = 2(1 - Phi(2.6502)) = 0.00805; Wald se = sqrt(.8·.2/70 + .6·.4/80) = 0.072703,
    0.2 ± 1.95996·se = [0.0575, 0.3425] (Newcomb's method 1)."""
    pooled = (X1 + X2) / (N1 + N2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / N1 + 1 / N2))
    assert se0 == pytest.approx(0.075467, abs=1e-6)
    result = stats.compare_proportions(X1, N1, X2, N2, method="wald")
    assert result["difference"] == pytest.approx(0.2)
    assert result["p_value"] == pytest.approx(0.00805, abs=5e-5)
    assert result["ci"] == pytest.approx([0.0575, 0.3425], abs=5e-5)
    assert result["significant"] is True


def test_default_interval_is_newcombs_hybrid_score_interval():
    """Newcomb's Table II, method 10, for the same example: [0.0524, 0.3339]."""
    result = stats.compare_proportions(X1, N1, X2, N2)
    assert result["ci_method"] == "newcomb"
    assert result["ci"] == pytest.approx([0.0524, 0.3339], abs=5e-5)


def test_no_difference_is_not_significant_and_swapping_arms_flips_the_sign():
    same = stats.compare_proportions(100, 1000, 100, 1000)
    assert same["difference"] == 0 and same["p_value"] == pytest.approx(1.0) and not same["significant"]
    assert same["ci"][0] < 0 < same["ci"][1]
    ab, ba = stats.compare_proportions(X1, N1, X2, N2), stats.compare_proportions(X2, N2, X1, N1)
    assert ba["difference"] == pytest.approx(-ab["difference"])
    assert ba["ci"] == pytest.approx([-ab["ci"][1], -ab["ci"][0]])
    assert ba["p_value"] == pytest.approx(ab["p_value"])


def test_degenerate_counts_give_no_false_evidence():
    assert stats.compare_proportions(0, 50, 0, 60)["p_value"] == 1.0
    assert stats.compare_proportions(50, 50, 60, 60)["significant"] is False
    empty = stats.compare_proportions(0, 0, 5, 10)
    assert empty["difference"] is None and empty["ci"] is None and empty["p_value"] is None
    with pytest.raises(ValueError, match="converted <= users"):
        stats.compare_proportions(11, 10, 5, 10)


def test_wilson_interval_of_one_rate():
    """Wilson 95% for 56/70, by hand: z² = 3.841459, 1 + z²/n = 1.054878, centre (0.8 + z²/140)/1.054878 =
    0.784393, half-width z·sqrt(0.8·0.2/70 + z²/19600)/1.054878 = 0.092561: [0.69183, 0.87695]."""
    assert stats.rate_interval(56, 70) == pytest.approx([0.69183, 0.87695], abs=5e-5)
    assert stats.rate_interval(0, 0) is None


def test_sample_ratio_mismatch_found_and_not_imagined():
    shares = {"control": 0.5, "treatment": 0.5}
    off = stats.sample_ratio_mismatch({"control": 5000, "treatment": 4700}, shares)
    # chi2 = 2 * 150² / 4850 = 9.278, p = 0.0023
    assert off["statistic"] == pytest.approx(9.2784, abs=1e-3)
    assert off["p_value"] == pytest.approx(0.00232, abs=1e-5)
    assert off["mismatch"] is True
    fine = stats.sample_ratio_mismatch({"control": 5000, "treatment": 4980}, shares)
    assert fine["p_value"] == pytest.approx(0.8413, abs=1e-4) and fine["mismatch"] is False
    canary = stats.sample_ratio_mismatch({"control": 9000, "treatment": 1000}, {"control": 0.9, "treatment": 0.1})
    assert canary["p_value"] == pytest.approx(1.0) and canary["mismatch"] is False
    assert stats.sample_ratio_mismatch({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5})["mismatch"] is False
    with pytest.raises(ValueError, match="same arms"):
        stats.sample_ratio_mismatch({"a": 1}, {"a": 0.5, "b": 0.5})


def test_minimum_detectable_effect_shrinks_with_users_and_matches_the_normal_approximation():
    small = stats.minimum_detectable_effect(0.10, 500, 500)
    large = stats.minimum_detectable_effect(0.10, 5000, 5000)
    assert small > large > 0
    # by hand (normal approximation): (z_.975 + z_.8) * sqrt(2 p (1-p) / n) = 2.8016 * 0.006 = 0.0168 at n = 5000
    assert large == pytest.approx(0.0168, rel=0.05)
    assert stats.minimum_detectable_effect(None, 10, 10) is None
    assert stats.minimum_detectable_effect(0.1, 0, 10) is None


def test_bootstrap_interval_covers_a_known_difference_and_is_seeded():
    rng = np.random.default_rng(3)
    t, c = rng.normal(12.0, 4.0, 800), rng.normal(10.0, 4.0, 800)
    first = stats.bootstrap_difference(t, c, seed=7)
    assert first["difference"] == pytest.approx(t.mean() - c.mean())
    low, high = first["ci"]
    assert low < first["difference"] < high and low > 0  # 2.0 ± about 0.4
    assert high - low == pytest.approx(2 * 1.96 * 4.0 * math.sqrt(2 / 800), rel=0.15)
    assert stats.bootstrap_difference(t, c, seed=7) == first
    assert stats.bootstrap_difference([1.0, 1.0], [2.0, 2.0])["ci"] == [-1.0, -1.0]
    assert stats.bootstrap_difference([1.0], [2.0, 3.0])["ci"] is None


# ------------------------------------------------------------------------------------------- the canary

START = datetime(2026, 3, 1)


def canary_report(t: tuple[int, int], c: tuple[int, int], users: tuple[int, int] | None = None,
                  shares: tuple[float, float] = (0.5, 0.5)) -> dict:
    """A minimal report: judged and converted users per arm, users for the SRM check."""
    users = users or (t[1], c[1])
    return {
        "control": "control",
        "arms": {"treatment": {"converted_users": t[0], "judged_users": t[1], "users": users[0]},
                 "control": {"converted_users": c[0], "judged_users": c[1], "users": users[1]}},
        "srm": stats.sample_ratio_mismatch({"treatment": users[0], "control": users[1]},
                                           {"treatment": shares[0], "control": shares[1]}),
    }


def decide(report: dict, days: float = 1.0, min_users: int = 1000, max_days: float = 14.0) -> str:
    return stats.canary_decision(report, min_users, max_days, START, START + timedelta(days=days))


def test_canary_promotes_a_treatment_shown_not_worse():
    assert decide(canary_report((1500, 10000), (1000, 10000))) == "promote"  # better
    assert decide(canary_report((1000, 10000), (1000, 10000))) == "promote"  # equal, CI within ±0.85 pp


def test_canary_waits_without_enough_users_or_evidence_and_aborts_at_max_days():
    too_few = canary_report((150, 1000), (100, 1000))
    assert decide(too_few, min_users=2000) == "wait"
    assert decide(too_few, min_users=2000, days=14) == "abort"
    unclear = canary_report((95, 1000), (100, 1000))  # CI of the difference reaches about -2.7 pp
    assert decide(unclear) == "wait"
    assert decide(unclear, days=13.9) == "wait"
    assert decide(unclear, days=14) == "abort"


def test_canary_aborts_a_worse_treatment_even_early():
    assert decide(canary_report((800, 10000), (1000, 10000))) == "abort"
    assert decide(canary_report((60, 1000), (100, 1000)), min_users=5000, days=0.1) == "abort"


def test_canary_aborts_on_a_sample_ratio_mismatch():
    report = canary_report((1500, 10000), (1000, 10000), users=(4700, 5000))
    assert report["srm"]["mismatch"]
    assert decide(report) == "abort"


def test_canary_margin_and_alpha_are_the_rules_own():
    slightly_lower = canary_report((980, 10000), (1000, 10000))  # CI about [-1.03, +0.63] pp
    assert stats.canary_decision(slightly_lower, 1000, 14, START, START + timedelta(days=1), margin=0.02) == "promote"
    assert stats.canary_decision(slightly_lower, 1000, 14, START, START + timedelta(days=1), margin=0.005) == "wait"
    with pytest.raises(ValueError, match="min_users"):
        stats.canary_decision(slightly_lower, 0, 14, START, START)


def test_canary_needs_exactly_one_treatment():
    report = canary_report((1500, 10000), (1000, 10000))
    report["arms"]["other"] = report["arms"]["treatment"]
    with pytest.raises(ValueError, match="exactly one treatment"):
        decide(report)
