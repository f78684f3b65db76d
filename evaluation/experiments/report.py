"""The experiment report: a JSON-able dict and a readable text table, from plain data.

`build_report` joins the per-arm metrics (`evaluation.experiments.arms`) with the statistics
(`evaluation.experiments.stats`): for every arm its share, model version, users, judged users, conversion
rate with its Wilson interval, watch minutes, rating, answers, fallback share and p95 latency; for every
treatment against control the difference of conversion with its interval, the p-value, the minimum
detectable effect at the current numbers of users, and bootstrap intervals of the differences of watch
minutes and ratings; the sample-ratio check over all arms; ``treatment_worse`` (some treatment converts
significantly worse); and, when a canary rule is given, its decision. Times are ISO 8601 strings; the
report holds counts and summaries only (no per-user rows), so it can be stored and compared.
`render_text` prints it as a table.

Several treatments are each compared with control at ``alpha`` with no correction: with k treatments the
chance that some comparison is falsely significant grows to about k·alpha; pass ``alpha / k`` (Bonferroni)
for a family-wise level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.assignment import validate_arms
from evaluation.experiments import stats
from evaluation.experiments.arms import DEFAULT_WINDOW, arm_metrics


@dataclass(frozen=True)
class CanaryRule:
    """The canary's rule: promote once ``min_users`` judged users per arm show the treatment is not worse;
    abort when it is worse, on a sample-ratio mismatch, or at ``max_days`` without a promotion."""

    min_users: int
    max_days: float
    started_at: datetime
    now: datetime
    margin: float = stats.NONINFERIORITY_MARGIN


def build_report(experiment: str, control: str, shares: Sequence[tuple[str, float]],
                 served: Sequence[Mapping[str, Any]], watched: Iterable[Mapping[str, Any]],
                 ratings: Iterable[Mapping[str, Any]], window: timedelta = DEFAULT_WINDOW,
                 as_of: datetime | None = None, alpha: float = stats.ALPHA, seed: int = 0,
                 canary: CanaryRule | None = None) -> dict[str, Any]:
    """The report of ``experiment`` (arms and their shares as `core.assignment` takes them)."""
    validate_arms(shares)
    share_of = dict(shares)
    if control not in share_of:
        raise ValueError(f"the control arm {control!r} is not one of the experiment's arms {sorted(share_of)}")
    unknown = sorted({str(r["arm"]) for r in served} - set(share_of))
    if unknown:
        raise ValueError(f"served answers name arms the experiment does not have: {unknown}")
    metrics = arm_metrics(served, watched, ratings, window, as_of, arms=list(share_of))
    arms = {}
    for name, m in metrics["arms"].items():
        arms[name] = {"share": share_of[name], **m,
                      "conversion_ci": stats.rate_interval(m["converted_users"], m["judged_users"], alpha)}
    c = arms[control]
    comparisons = {}
    for name, t in arms.items():
        if name == control:
            continue
        samples_t, samples_c = metrics["samples"][name], metrics["samples"][control]
        comparisons[name] = {
            "conversion": stats.compare_proportions(t["converted_users"], t["judged_users"],
                                                    c["converted_users"], c["judged_users"], alpha),
            "mde": stats.minimum_detectable_effect(c["conversion_rate"] if c["judged_users"] else None,
                                                   t["judged_users"], c["judged_users"], alpha),
            "watch_minutes": stats.bootstrap_difference(samples_t["watch_minutes"], samples_c["watch_minutes"],
                                                        alpha, seed),
            "rating": stats.bootstrap_difference(samples_t["rating"], samples_c["rating"], alpha, seed),
        }
    report: dict[str, Any] = {
        "experiment": experiment,
        "control": control,
        "alpha": alpha,
        "window_hours": metrics["window_hours"],
        "as_of": as_of.isoformat() if as_of else None,
        "users_in_several_arms": metrics["users_in_several_arms"],
        "arms": arms,
        "comparisons": comparisons,
        "srm": stats.sample_ratio_mismatch({a: m["users"] for a, m in arms.items()}, share_of),
        "treatment_worse": any(_worse(cmp) for cmp in comparisons.values()),
        "canary": None,
        "decision": None,
    }
    if canary is not None:
        report["decision"] = stats.canary_decision(report, canary.min_users, canary.max_days, canary.started_at,
                                                   canary.now, alpha=alpha, margin=canary.margin)
        report["canary"] = {"min_users": canary.min_users, "max_days": canary.max_days,
                            "started_at": canary.started_at.isoformat(), "now": canary.now.isoformat(),
                            "margin": canary.margin}
    return report


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _interval(ci: Sequence[float] | None, signed: bool = False) -> str:
    return "[-]" if ci is None else f"[{_pct(ci[0], signed)}, {_pct(ci[1], signed)}]"


def _number(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def render_text(report: Mapping[str, Any]) -> str:
    """The report as a fixed-width table (rates and differences in percent / percentage points)."""
    level = f"{100 * (1 - report['alpha']):g}%"
    lines = [f"experiment {report['experiment']}: control {report['control']}, window {report['window_hours']:g} h, "
             f"as of {report['as_of'] or '-'}",
             f"{'arm':<14}{'version':<14}{'share':>6}{'users':>8}{'judged':>8}  "
             f"{'conversion % [' + level + ' CI]':<30}{'minutes':>8}{'rating':>7}{'answers':>9}"
             f"{'fallback%':>10}{'p95 ms':>8}"]
    for name, a in report["arms"].items():
        conversion = f"{_pct(a['conversion_rate'])} {_interval(a['conversion_ci'])}"
        lines.append(f"{name:<14}{a['model_version'] or '-'!s:<14}{a['share']:>6.2f}{a['users']:>8}"
                     f"{a['judged_users']:>8}  {conversion:<30}{a['mean_watch_minutes']:>8.1f}"
                     f"{_number(a['mean_rating'], '.2f'):>7}{a['answers']:>9}{100 * a['fallback_share']:>10.2f}"
                     f"{_number(a['p95_latency_ms']):>8}")
    for name, cmp in report["comparisons"].items():
        conv = cmp["conversion"]
        p = "-" if conv["p_value"] is None else f"{conv['p_value']:.4g}"
        lines.append(f"{name} - {report['control']}: conversion {_pct(conv['difference'], True)} pp "
                     f"{_interval(conv['ci'], True)}, p = {p}, MDE {_pct(cmp['mde'])} pp; watch minutes "
                     f"{_number(cmp['watch_minutes']['difference'], '+.1f')}")
    srm = report["srm"]
    lines.append(f"sample ratio: p = {srm['p_value']:.4g} ({'MISMATCH' if srm['mismatch'] else 'ok'})"
                 + (f"; {report['users_in_several_arms']} users served by several arms left out"
                    if report["users_in_several_arms"] else ""))
    lines.append(f"treatment worse: {'yes' if report['treatment_worse'] else 'no'}; "
                 f"decision: {report['decision'] or '- (not a canary)'}")
    return "\n".join(lines)


def _worse(comparison: Mapping[str, Any]) -> bool:
    """True when a treatment converts significantly worse than control."""
    conversion: Mapping[str, Any] = comparison["conversion"]
    return bool(conversion["significant"]) and float(conversion["difference"]) < 0
