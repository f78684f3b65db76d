"""The training role's side of online experiments: start, stop, the report from the store, and the canary
rule applied on the trainer's schedule.

- `start`: control = the active version; the treatment must be another version that still has its vectors.
- `stop`: ends the running experiment; with ``promote`` its treatment becomes the active version.
- `report_of` (`evaluation.experiments.store`): the experiment's report from the store.
- `apply_canary`: at every tick of `training run --every`, before the cycle: the running canary's
  decision (`evaluation.experiments.stats.canary_decision`): promote -> the treatment is activated (event
  "canary") and the experiment stopped, in one transaction; abort -> the experiment is stopped, the abort
  logged at error level; every tick exports the experiment's gauges (`evaluation.experiments.exporter`)
  into the trainer's registry, so ExperimentTreatmentWorse and ExperimentSampleRatioMismatch can fire.
  An aborted canary's gauges stay exported (its alert keeps firing) until the next experiment runs. An
  experiment whose control is no longer the active version (a cycle or an operator promoted another) is
  stopped: its control arm would be serving something else.
"""

from __future__ import annotations

import logging
import weakref
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine

from core.assignment import validate_arms
from db_utils import experiments as ex
from db_utils import model_versions as mv
from evaluation.experiments.store import report_of

log = logging.getLogger("training.experiments")
# the experiments whose gauges a registry holds (weakly keyed, as the exporter keeps its gauges)
_exported: weakref.WeakKeyDictionary[CollectorRegistry, set[str]] = weakref.WeakKeyDictionary()


def _servable(conn: Connection, version_id: int) -> mv.VersionRow:
    version = mv.get_version(conn, version_id)
    if version is None:
        raise ValueError(f"there is no model version {mv.version_name(version_id)}.")
    if version.collections_dropped or not version.collab_collection:
        raise ValueError(f"{version.name} has no vectors any more (pruned or never fitted); it cannot be served.")
    return version


def start(engine: Engine, treatment: str, share: float, now: datetime, name: str | None = None,
          canary: bool = False, min_users: int | None = None, max_days: float | None = None) -> dict[str, Any]:
    """Start an experiment of `treatment` (a version name) against the active version; its document."""
    if canary and (min_users is None or max_days is None or min_users < 1 or max_days <= 0):
        raise ValueError("a canary needs --min-users N (at least 1) and --max-days D (more than 0).")
    if not canary and (min_users is not None or max_days is not None):
        raise ValueError("--min-users and --max-days are the canary's rule: add --canary.")
    treatment_id = mv.parse_version_name(treatment)
    with engine.begin() as conn:
        active = mv.active_version(conn)
        if active is None:
            raise ValueError("no version is active, so there is no control to compare with; promote one first.")
        _servable(conn, treatment_id)
        arms = ex.build_arms(active.id, treatment_id, share)
        validate_arms([(a["arm"], a["share"]) for a in arms])  # the shares the service will cut by
        row = ex.start(conn, name=name or f"{active.name}-vs-{mv.version_name(treatment_id)}-{now:%Y%m%d%H%M%S}",
                       control_version_id=active.id, arms=arms, now=now, is_canary=canary,
                       min_users=min_users, max_days=max_days)
    log.info("experiment started", extra={"experiment": row.name, "treatment": mv.version_name(treatment_id),
                                          "share": share, "canary": canary})
    return {"started": row.as_dict()}


def stop(engine: Engine, now: datetime, promote: bool = False) -> dict[str, Any]:
    """Stop the running experiment; with `promote` activate its treatment (event "promote") too."""
    with engine.begin() as conn:
        row = ex.running(conn)
        if row is None:
            raise ValueError("no experiment is running.")
        previous = None
        if promote:
            _servable(conn, row.treatment_version_id)
            previous = mv.activate(conn, row.treatment_version_id, event="promote",
                                   reason=f"promoted from experiment {row.name}", now=now)
        ex.stop(conn, row.id, decision="promoted" if promote else "stopped", reason="stopped by hand", now=now)
    doc: dict[str, Any] = {"stopped": row.name, "decision": "promoted" if promote else "stopped"}
    if promote:
        doc.update(active=mv.version_name(row.treatment_version_id),
                   previous=None if previous is None else mv.version_name(previous))
    return doc


def apply_canary(engine: Engine, now: datetime, registry: CollectorRegistry | None = None) -> dict[str, Any] | None:
    """One tick of the canary rule (module docstring); the decision's document, or None when nothing runs.
    The gauges of a running experiment (canary or not) are exported to `registry` when given."""
    from evaluation.experiments.exporter import forget, update_gauges

    with engine.begin() as conn:
        row = ex.running(conn)
        if row is None:
            return None  # a stopped experiment's gauges stay until the next one runs: an abort stays alerted
        active = mv.active_version(conn)
        if active is None or active.id != row.control_version_id:
            # the control arm serves the active version: once that changed, the arms compare something else
            why = f"the active version changed to {active.name if active else 'none'} during the experiment"
            ex.stop(conn, row.id, decision="stopped", reason=why, now=now)
            doc: dict[str, Any] = {"experiment": row.name, "decision": "stopped", "reason": why}
            log.warning("experiment stopped", extra=doc)
            return doc
        report = report_of(conn, row, now)
        if registry is not None:
            for name in _exported.setdefault(registry, set()) - {row.name}:
                forget(name, registry)
            _exported[registry] = {row.name}
            update_gauges(report, registry)
        decision = report["decision"]
        doc = {"experiment": row.name, "decision": decision or "none",
               "treatment": mv.version_name(row.treatment_version_id),
               "judged_users": {a: m["judged_users"] for a, m in report["arms"].items()},
               "difference": report["comparisons"]["treatment"]["conversion"]["difference"],
               "p_value": report["comparisons"]["treatment"]["conversion"]["p_value"],
               "srm_p_value": report["srm"]["p_value"]}
        if decision == "promote":
            _servable(conn, row.treatment_version_id)
            mv.activate(conn, row.treatment_version_id, event="canary",
                        reason=f"canary {row.name}: not worse than control", now=now)
            ex.stop(conn, row.id, decision="promoted", reason="the canary rule: not worse than control", now=now)
        elif decision == "abort":
            why = ("sample-ratio mismatch" if report["srm"]["mismatch"] else
                   "treatment converts significantly worse" if report["treatment_worse"] else
                   f"not shown to be not worse within {row.max_days:g} days")
            ex.stop(conn, row.id, decision="aborted", reason=f"the canary rule: {why}", now=now)
            doc["reason"] = why
    if decision == "promote":
        log.info("canary promoted", extra=doc)
    elif decision == "abort":
        log.error("canary aborted", extra=doc)
    return doc
