"""core.assignment: shares, stickiness, independence between experiments, process independence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from core.assignment import assign, assigner, bucket

REPO = Path(__file__).resolve().parents[2]
ARMS = [("control", 0.5), ("treatment", 0.5)]
CANARY = [("control", 0.9), ("treatment", 0.1)]
THREE = [("control", 0.6), ("v2", 0.3), ("v3", 0.1)]
IDS = range(10_000)


@pytest.mark.parametrize("arms", [ARMS, CANARY, THREE], ids=["50-50", "90-10", "60-30-10"])
def test_shares_hold_over_ten_thousand_ids(arms):
    counts = Counter(assign("exp-shares", u, arms) for u in IDS)
    observed = [counts[name] for name, _ in arms]
    expected = [share * len(IDS) for _, share in arms]
    assert sum(observed) == len(IDS)
    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_a_skewed_assignment_would_fail_the_same_chi_square():
    """The check above can fail: 52% against 50% over 10,000 ids is rejected."""
    assert stats.chisquare([5200, 4800], [5000, 5000]).pvalue < 0.001


def test_assignment_is_sticky():
    first = [assign("exp-sticky", u, CANARY) for u in IDS]
    again = [assign("exp-sticky", u, CANARY) for u in reversed(IDS)]
    assert first == list(reversed(again))


def test_the_prepared_assigner_agrees_with_assign():
    arm_of = assigner("exp-fast", THREE)
    assert [arm_of(u) for u in IDS] == [assign("exp-fast", u, THREE) for u in IDS]
    with pytest.raises(ValueError, match="sum to 1"):
        assigner("exp-fast", [("a", 0.3)])


def test_points_lie_in_the_unit_interval_and_depend_on_the_experiment():
    points = [bucket("exp-a", u) for u in range(1000)]
    assert all(0.0 <= p < 1.0 for p in points)
    assert points != [bucket("exp-b", u) for u in range(1000)]


def test_assignments_of_two_experiments_are_independent():
    both = Counter((assign("exp-a", u, ARMS), assign("exp-b", u, ARMS)) for u in IDS)
    table = [[both[("control", "control")], both[("control", "treatment")]],
             [both[("treatment", "control")], both[("treatment", "treatment")]]]
    assert stats.chi2_contingency(table).pvalue > 0.001
    # the same experiment twice is the extreme of dependence: the same test rejects it
    same = Counter((assign("exp-a", u, ARMS), assign("exp-a", u, ARMS)) for u in IDS)
    table = [[same[("control", "control")], same[("control", "treatment")]],
             [same[("treatment", "control")], same[("treatment", "treatment")]]]
    assert stats.chi2_contingency(table).pvalue < 1e-100


def test_another_process_with_another_hash_seed_gives_the_same_arms():
    code = ("import json; from core.assignment import assign; "
            f"print(json.dumps([assign('exp-proc', u, {THREE!r}) for u in range(2000)]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [assign("exp-proc", u, THREE) for u in range(2000)]


def test_unknown_and_cold_start_ids_are_assigned_like_any_other():
    assert assign("exp", 0, ARMS) in {"control", "treatment"}
    assert assign("exp", 10**12, ARMS) in {"control", "treatment"}
    assert assign("exp", 7, [("only", 1.0)]) == "only"


@pytest.mark.parametrize(("arms", "message"), [
    ([], "at least one arm"),
    ([("a", 0.5), ("b", 0.4)], "sum to 1"),
    ([("a", 1.2), ("b", -0.2)], "positive"),
    ([("a", 0.0), ("b", 1.0)], "positive"),
    ([("a", float("nan")), ("b", 1.0)], "positive"),
    ([("a", 0.5), ("a", 0.5)], "distinct"),
    ([("a", True)], "positive"),
    ([("a", "1")], "positive"),
])
def test_bad_shares_are_refused_in_one_sentence(arms, message):
    with pytest.raises(ValueError, match=message):
        assign("exp", 1, arms)


def test_shares_within_the_tolerance_are_accepted():
    assert assign("exp", 1, [("a", 0.1), ("b", 0.2), ("c", 0.7)]) in {"a", "b", "c"}  # 0.1+0.2+0.7 != 1.0 exactly
    assert assign("exp", 1, [("a", np.float32(0.25)), ("b", 0.75)]) in {"a", "b"}


def test_core_assignment_imports_no_other_package_of_the_project():
    """The service imports it on every worker: it must not pull evaluation, statsmodels or the store."""
    code = ("import sys, core.assignment; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'db_utils', 'data_parsing', 'embeddings', "
            "'inference', 'evaluation', 'training', 'numpy', 'scipy', 'statsmodels'}))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
