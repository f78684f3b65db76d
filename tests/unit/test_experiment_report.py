"""evaluation.experiments.report on synthetic experiments: A/A false positives, A/B found, canary verdicts."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from scipy import stats

from evaluation.experiments.arms import arm_metrics
from evaluation.experiments.report import CanaryRule, build_report, render_text
from evaluation.experiments.stats import compare_proportions, sample_ratio_mismatch
from evaluation.experiments.synthetic import START, simulate

ARMS = [("control", 0.5), ("treatment", 0.5)]
CANARY_ARMS = [("control", 0.8), ("treatment", 0.2)]
VERSIONS = {"control": "v1", "treatment": "v2"}


def report_of(experiment, arms, conversion, users, seed, canary=None):
    data = simulate(experiment, arms, conversion, users, seed, versions=VERSIONS)
    return build_report(experiment, "control", arms, data.served, data.watched, data.ratings, as_of=data.as_of,
                        seed=seed, canary=canary)


def rule(min_users=300, days=3, max_days=14):
    return CanaryRule(min_users=min_users, max_days=max_days, started_at=START, now=START + timedelta(days=days))


def a_over_a(runs: int = 200, users: int = 1000) -> tuple[int, int]:
    """Significant conversion differences and sample-ratio mismatches over ``runs`` A/A experiments, by the
    report's own steps (per-arm metrics, then the statistics; the bootstrap of minutes is left out)."""
    significant = srm = 0
    for seed in range(runs):
        data = simulate(f"aa-{seed}", ARMS, {"control": 0.1, "treatment": 0.1}, users, seed, versions=VERSIONS)
        arms = arm_metrics(data.served, data.watched, data.ratings, as_of=data.as_of)["arms"]
        t, c = arms["treatment"], arms["control"]
        significant += compare_proportions(t["converted_users"], t["judged_users"], c["converted_users"],
                                           c["judged_users"])["significant"]
        srm += sample_ratio_mismatch({a: m["users"] for a, m in arms.items()}, dict(ARMS))["mismatch"]
    return significant, srm


def test_a_over_a_is_significant_about_alpha_of_the_time():
    """200 A/A experiments of 1,000 users converting with p = 0.1 in both arms: under a correct test the
    number called significant at 5% is Binomial(200, 0.05); more than its 99.9% quantile fails."""
    runs = 200
    significant, srm = a_over_a(runs)
    bound = stats.binom.ppf(0.999, runs, 0.05)
    assert significant <= bound, f"{significant} of {runs} A/A runs significant (bound {bound:.0f})"
    assert significant >= 1  # a test that never says "significant" would pass the bound too
    assert srm <= stats.binom.ppf(0.999, runs, 0.01)


def test_a_real_difference_is_found_and_the_canary_promotes_it():
    report = report_of("ab", ARMS, {"control": 0.10, "treatment": 0.16}, 3000, seed=1, canary=rule())
    conversion = report["comparisons"]["treatment"]["conversion"]
    assert conversion["p_value"] < 0.05 and conversion["difference"] > 0 and conversion["ci"][0] > 0
    assert report["comparisons"]["treatment"]["mde"] < conversion["difference"]
    assert not report["treatment_worse"] and not report["srm"]["mismatch"]
    assert report["decision"] == "promote"


def test_the_worse_version_as_treatment_is_aborted():
    report = report_of("ab", ARMS, {"control": 0.16, "treatment": 0.10}, 3000, seed=1, canary=rule())
    conversion = report["comparisons"]["treatment"]["conversion"]
    assert conversion["p_value"] < 0.05 and conversion["ci"][1] < 0
    assert report["treatment_worse"] and report["decision"] == "abort"


def test_a_small_canary_waits_then_is_aborted_at_max_days():
    early = report_of("small", CANARY_ARMS, {"control": 0.1, "treatment": 0.1}, 400, seed=2, canary=rule(days=2))
    assert early["arms"]["treatment"]["judged_users"] < 300 and early["decision"] == "wait"
    late = report_of("small", CANARY_ARMS, {"control": 0.1, "treatment": 0.1}, 400, seed=2, canary=rule(days=14))
    assert late["decision"] == "abort"


def test_a_lost_share_of_treatment_logs_is_a_sample_ratio_mismatch():
    data = simulate("srm", ARMS, {"control": 0.1, "treatment": 0.1}, 4000, seed=3, versions=VERSIONS)
    lost = {u for u in range(1, 4001) if u % 10 == 0}
    served = [r for r in data.served if not (r["arm"] == "treatment" and r["user_id"] in lost)]
    report = build_report("srm", "control", ARMS, served, data.watched, data.ratings, as_of=data.as_of,
                          canary=rule())
    assert report["srm"]["mismatch"] and report["srm"]["p_value"] < 0.01
    assert report["decision"] == "abort"


def test_the_report_is_json_and_a_readable_table():
    report = report_of("table", ARMS, {"control": 0.10, "treatment": 0.16}, 2000, seed=4, canary=rule())
    again = json.loads(json.dumps(report))
    assert again == report
    assert set(report["arms"]["treatment"]) >= {"share", "model_version", "users", "judged_users",
                                                "conversion_rate", "conversion_ci", "answers", "fallback_share",
                                                "p95_latency_ms", "mean_watch_minutes", "mean_rating"}
    text = render_text(report)
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["arm", "version", "share"]
    treatment = report["arms"]["treatment"]
    row = next(line for line in lines if line.startswith("treatment "))
    assert "v2" in row and f"{100 * treatment['conversion_rate']:.2f}" in row and str(treatment["users"]) in row
    p = report["comparisons"]["treatment"]["conversion"]["p_value"]
    assert f"p = {p:.4g}" in text and "MDE" in text and "sample ratio: p =" in text
    assert text.endswith("decision: promote")


def test_bad_experiments_are_refused_in_one_sentence():
    data = simulate("bad", ARMS, {"control": 0.1, "treatment": 0.1}, 50, seed=5)
    with pytest.raises(ValueError, match="control arm"):
        build_report("bad", "nope", ARMS, data.served, data.watched, data.ratings)
    with pytest.raises(ValueError, match="does not have"):
        build_report("bad", "control", [("control", 1.0)], data.served, data.watched, data.ratings)
    with pytest.raises(ValueError, match="sum to 1"):
        build_report("bad", "control", [("control", 0.5), ("treatment", 0.6)], data.served, [], [])
