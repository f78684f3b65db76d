"""An experiment's report from the SQL store: the served lists the stream logged during the experiment,
each user's arm recomputed with `core.assignment` exactly as the service assigns it, the users' watches
and ratings, through `evaluation.experiments.report.build_report`, judged on the store's own clock (its
latest activity), as `evaluation online` is. The same store gives the same report. Used by
`python -m evaluation experiment report` and by the trainer's canary rule (`training.experiments`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from core.assignment import assigner
from db_utils import experiments as ex
from db_utils import model_versions as mv


def annotate(served: list[dict[str, Any]], experiment: ex.ExperimentRow) -> list[dict[str, Any]]:
    """Each served list with the arm `core.assignment` gives its user and the arm's version name (the store
    does not record fallbacks: every list counts as not one)."""
    arm_of = assigner(experiment.assignment_key, experiment.shares)
    out = []
    for row in served:
        arm = arm_of(row["user_id"])
        out.append({**row, "arm": arm, "model_version": mv.version_name(experiment.version_of(arm)),
                    "fallback": False})
    return out


def report_of(conn: Connection, experiment: ex.ExperimentRow, now: datetime | None = None,
              window_hours: float = 24.0) -> dict[str, Any]:
    """The experiment's report from the store (module docstring); a canary's carries its decision at `now`
    (default: the store's clock)."""
    from datetime import timedelta

    from evaluation.experiments.report import CanaryRule, build_report

    served, watched, ratings, as_of = ex.activity(conn, experiment.started_at, experiment.stopped_at)
    rule = None
    if experiment.is_canary and experiment.min_users and experiment.max_days:
        rule = CanaryRule(experiment.min_users, experiment.max_days, experiment.started_at,
                          now or as_of or experiment.started_at)
    report = build_report(experiment.name, "control", experiment.shares, annotate(served, experiment), watched,
                          ratings, window=timedelta(hours=window_hours), as_of=as_of, canary=rule)
    report["started_at"] = experiment.started_at.isoformat()
    report["stopped_at"] = experiment.stopped_at.isoformat() if experiment.stopped_at else None
    report["status"] = experiment.status
    return report
