"""Statistics of an experiment over users, and the canary rule, as pure functions of counts and samples.

- `rate_interval`: one arm's conversion rate with its Wilson interval.
- `compare_proportions`: conversion of a treatment against control, users as units. The p-value is the
  pooled two-proportion z-test (statsmodels `proportions_ztest`, two-sided); the interval of the difference
  treatment - control is Newcomb's hybrid score interval (statsmodels `confint_proportions_2indep`,
  ``method="newcomb"``), which keeps its coverage with the small counts of a young canary where the Wald
  interval does not (``method="wald"`` gives the textbook p1 - p2 ± z·se). *Significant* means p < alpha.
- `bootstrap_difference`: the difference of means of a per-user value (watch minutes, rating) with a BCa
  bootstrap interval over users (scipy.stats.bootstrap, seeded, so a report is reproducible).
- `minimum_detectable_effect`: the smallest absolute lift over the control's conversion rate that a
  two-sided test at alpha finds with the given power (default 80%) at the current numbers of users
  (statsmodels NormalIndPower on Cohen's h, mapped back to a rate).
- `sample_ratio_mismatch`: chi-square of the users per arm against the configured shares (scipy.stats
  chisquare). A mismatch (p < SRM_ALPHA = 0.01) means the assignment or the logging is broken and no
  comparison can be trusted: 5,000 vs 4,700 users under 50/50 gives p = 0.0023 (flagged), 5,000 vs 4,980
  gives p = 0.84. The threshold is stricter than alpha because the check runs on every report.
- `canary_decision(report, min_users, max_days, started_at, now, alpha)`: in this order
  1. ``"abort"`` on a sample-ratio mismatch;
  2. ``"abort"`` when the treatment converts significantly worse than control (p < alpha, lower rate):
     this may happen before ``min_users``, as stopping early for harm only risks aborting a good version;
  3. ``"promote"`` when both arms have at least ``min_users`` judged users and the treatment is not
     worse: the lower bound of the two-sided (1 - alpha) interval of treatment - control lies above
     ``-margin`` (non-inferiority, CONSORT's convention; margin default NONINFERIORITY_MARGIN = 0.01, one
     percentage point of conversion);
  4. ``"abort"`` once ``max_days`` have passed since ``started_at`` without a promotion: a canary that
     cannot show it is not worse is not kept serving;
  5. ``"wait"`` otherwise.
  The rule recomputes the comparison from the report's counts at its own alpha, so it depends only on them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

ALPHA = 0.05
SRM_ALPHA = 0.01
POWER = 0.8
NONINFERIORITY_MARGIN = 0.01
BOOTSTRAP_RESAMPLES = 2000

Decision = Literal["promote", "abort", "wait"]


def rate_interval(converted: int, users: int, alpha: float = ALPHA) -> list[float] | None:
    """The Wilson (1 - alpha) interval of one arm's conversion rate (None without users)."""
    if not users:
        return None
    low, high = proportion_confint(converted, users, alpha=alpha, method="wilson")
    return [float(low), float(high)]


def compare_proportions(converted_t: int, users_t: int, converted_c: int, users_c: int, alpha: float = ALPHA,
                        method: str = "newcomb") -> dict[str, Any]:
    """Treatment vs control conversion: rates, difference t - c, its (1 - alpha) interval, the z-test's
    p-value and whether it is significant. With no users in an arm there is nothing to compare: the
    difference, interval and p-value are None."""
    for name, x, n in (("treatment", converted_t, users_t), ("control", converted_c, users_c)):
        if n < 0 or not 0 <= x <= max(n, 0):
            raise ValueError(f"the {name} counts must satisfy 0 <= converted <= users, got {x} of {n}")
    out: dict[str, Any] = {
        "rate_treatment": converted_t / users_t if users_t else None,
        "rate_control": converted_c / users_c if users_c else None,
        "difference": None, "ci": None, "p_value": None, "significant": False, "alpha": alpha,
        "ci_method": method,
    }
    if not users_t or not users_c:
        return out
    out["difference"] = out["rate_treatment"] - out["rate_control"]
    low, high = confint_proportions_2indep(converted_t, users_t, converted_c, users_c, method=method,
                                           compare="diff", alpha=alpha)
    out["ci"] = [float(low), float(high)]
    pooled = (converted_t + converted_c) / (users_t + users_c)
    if 0.0 < pooled < 1.0:  # with everyone or no one converted the z statistic is 0/0: no evidence of a difference
        _, p = proportions_ztest([converted_t, converted_c], [users_t, users_c])
        out["p_value"] = float(p)
    else:
        out["p_value"] = 1.0
    out["significant"] = out["p_value"] < alpha
    return out


def bootstrap_difference(treatment: Sequence[float], control: Sequence[float], alpha: float = ALPHA,
                         seed: int = 0, n_resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """Mean of treatment - mean of control with a BCa bootstrap (1 - alpha) interval over users; None
    values when an arm has fewer than two users."""
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    out: dict[str, Any] = {"mean_treatment": float(t.mean()) if t.size else None,
                           "mean_control": float(c.mean()) if c.size else None,
                           "difference": None, "ci": None}
    if t.size < 2 or c.size < 2:
        return out
    diff = float(t.mean() - c.mean())
    out["difference"] = diff
    if np.ptp(t) == 0 and np.ptp(c) == 0:
        out["ci"] = [diff, diff]  # every resample gives the same difference
        return out

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap((t, c), statistic, n_resamples=n_resamples, confidence_level=1 - alpha,
                                 vectorized=True, batch=200, rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa undefined (e.g. one arm constant): percentile
        result = stats.bootstrap((t, c), statistic, n_resamples=n_resamples, confidence_level=1 - alpha,
                                 vectorized=True, batch=200, method="percentile", rng=np.random.default_rng(seed))
        low, high = result.confidence_interval
    out["ci"] = [float(low), float(high)]
    return out


def minimum_detectable_effect(rate_control: float | None, users_t: int, users_c: int, alpha: float = ALPHA,
                              power: float = POWER) -> float | None:
    """The smallest absolute lift over ``rate_control`` detectable with ``power`` at these numbers of users
    (None without users, or with a control rate of 0 or 1 where Cohen's h has no room)."""
    if not users_t or not users_c or rate_control is None or not 0.0 < rate_control < 1.0:
        return None
    h = NormalIndPower().solve_power(effect_size=None, nobs1=users_c, alpha=alpha, power=power,
                                     ratio=users_t / users_c, alternative="two-sided")
    angle = math.asin(math.sqrt(rate_control)) + float(h) / 2
    if angle >= math.pi / 2:
        return 1.0 - rate_control
    return math.sin(angle) ** 2 - rate_control


def sample_ratio_mismatch(users: Mapping[str, int], shares: Mapping[str, float],
                          alpha: float = SRM_ALPHA) -> dict[str, Any]:
    """Chi-square of the users per arm against the shares; ``mismatch`` when p < alpha. With no users
    (or one arm) there is nothing to test: p = 1."""
    if set(users) != set(shares):
        raise ValueError(f"users and shares must name the same arms, got {sorted(users)} and {sorted(shares)}")
    names = sorted(shares)
    observed = [int(users[a]) for a in names]
    total = sum(observed)
    if total == 0 or len(names) < 2:
        return {"p_value": 1.0, "statistic": 0.0, "mismatch": False, "alpha": alpha}
    expected = [shares[a] / math.fsum(shares.values()) * total for a in names]
    result = stats.chisquare(observed, expected)
    p = float(result.pvalue)
    return {"p_value": p, "statistic": float(result.statistic), "mismatch": p < alpha, "alpha": alpha}


def _treatment_of(report: Mapping[str, Any]) -> str:
    treatments = [a for a in report["arms"] if a != report["control"]]
    if len(treatments) != 1:
        raise ValueError(f"a canary has exactly one treatment arm, this experiment has {len(treatments)}")
    return treatments[0]


def canary_decision(report: Mapping[str, Any], min_users: int, max_days: float, started_at: datetime,
                    now: datetime, alpha: float = ALPHA, margin: float = NONINFERIORITY_MARGIN) -> Decision:
    """Promote, abort or wait, by the rule in the module docstring, from a report of
    `evaluation.experiments.report.build_report` (only its control, arms' counts and srm are read)."""
    if min_users < 1 or max_days <= 0 or margin < 0:
        raise ValueError("the canary needs min_users >= 1, max_days > 0 and a margin >= 0")
    if report["srm"]["mismatch"]:
        return "abort"
    treatment = _treatment_of(report)
    t, c = report["arms"][treatment], report["arms"][report["control"]]
    comparison = compare_proportions(t["converted_users"], t["judged_users"], c["converted_users"],
                                     c["judged_users"], alpha=alpha)
    if comparison["significant"] and comparison["difference"] < 0:
        return "abort"
    enough = min(t["judged_users"], c["judged_users"]) >= min_users
    if enough and comparison["ci"] is not None and comparison["ci"][0] > -margin:
        return "promote"
    if now - started_at >= timedelta(days=max_days):
        return "abort"
    return "wait"
