"""Statements of online experiments: start (at most one running), stop, the running one, by name, and
the store's reads a report is built from.

The training role writes these rows (`python -m training experiment start|stop`, the canary rule); the
service reads the running one beside the active version (one indexed row, the same poll); the evaluation
reads an experiment and the served lists and activity of its period. Every function takes an open
Connection; the caller owns the transaction. `arms` is stored as JSON text and returned decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from db_utils.model_versions import version_name
from db_utils.models import EXPERIMENTS_TABLE, SERVED_TABLE
from db_utils.queries import activity_of_users, latest_activity

ARMS = ("control", "treatment")
DECISIONS = ("promoted", "aborted", "stopped")


@dataclass(frozen=True)
class ExperimentRow:
    """One experiment as plain data; `arms` is [{"arm", "version_id", "share"}], control first."""

    id: int
    name: str
    status: str
    control_version_id: int
    arms: list[dict[str, Any]]
    is_canary: bool
    min_users: int | None
    max_days: float | None
    started_at: datetime
    stopped_at: datetime | None = None
    decision: str | None = None
    reason: str | None = None

    @property
    def assignment_key(self) -> str:
        """The text `core.assignment` hashes with the user id: the name (unique, stable, readable in logs).
        The service and the report both take it from here, so they cannot disagree."""
        return self.name

    @property
    def shares(self) -> list[tuple[str, float]]:
        """[(arm, share)] in the stored order, as `core.assignment` takes them."""
        return [(str(a["arm"]), float(a["share"])) for a in self.arms]

    def version_of(self, arm: str) -> int:
        """The version id an arm serves."""
        return next(int(a["version_id"]) for a in self.arms if a["arm"] == arm)

    @property
    def treatment_version_id(self) -> int:
        return self.version_of("treatment")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able document (times as ISO strings, versions also by name)."""
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__}
        doc["arms"] = [{**a, "version": version_name(int(a["version_id"]))} for a in self.arms]
        for key in ("started_at", "stopped_at"):
            doc[key] = doc[key].isoformat() if doc[key] is not None else None
        return doc


def build_arms(control_id: int, treatment_id: int, share: float) -> list[dict[str, Any]]:
    """The arms of a two-arm experiment giving ``share`` of the users to the treatment."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"the treatment's share must be between 0 and 1 (exclusive), got {share!r}.")
    if control_id == treatment_id:
        raise ValueError(f"v{treatment_id} is already the active version; a treatment must be another version.")
    return [{"arm": "control", "version_id": control_id, "share": 1.0 - share},
            {"arm": "treatment", "version_id": treatment_id, "share": share}]


def _columns() -> list[Any]:
    t = EXPERIMENTS_TABLE.c
    return [t[name] for name in ExperimentRow.__dataclass_fields__]


def _row(mapping: Any) -> ExperimentRow:
    values = dict(mapping)
    values["arms"] = json.loads(values["arms"])
    values["is_canary"] = bool(values["is_canary"])
    return ExperimentRow(**values)


def running(conn: Connection) -> ExperimentRow | None:
    """The running experiment, or None (one row through the partial unique index)."""
    row = conn.execute(select(*_columns()).where(EXPERIMENTS_TABLE.c.status == "running")).mappings().first()
    return None if row is None else _row(row)


def by_name(conn: Connection, name: str) -> ExperimentRow | None:
    row = conn.execute(select(*_columns()).where(EXPERIMENTS_TABLE.c.name == name)).mappings().first()
    return None if row is None else _row(row)


def latest(conn: Connection) -> ExperimentRow | None:
    """The newest experiment, running or not."""
    t = EXPERIMENTS_TABLE.c
    row = conn.execute(select(*_columns()).order_by(t.id.desc()).limit(1)).mappings().first()
    return None if row is None else _row(row)


def start(conn: Connection, *, name: str, control_version_id: int, arms: list[dict[str, Any]], now: datetime,
          is_canary: bool = False, min_users: int | None = None, max_days: float | None = None) -> ExperimentRow:
    """Insert a running experiment; ValueError (one sentence) when one is running already or the name is
    taken. The unique index still guards a concurrent start (the loser's transaction fails)."""
    current = running(conn)
    if current is not None:
        raise ValueError(f"experiment {current.name!r} is running; stop it first (python -m training experiment stop).")
    if by_name(conn, name) is not None:
        raise ValueError(f"an experiment named {name!r} exists already; choose another --name.")
    conn.execute(EXPERIMENTS_TABLE.insert().values(
        name=name, status="running", control_version_id=control_version_id, arms=json.dumps(arms),
        is_canary=is_canary, min_users=min_users, max_days=max_days, started_at=now))
    found = by_name(conn, name)
    assert found is not None
    return found


def stop(conn: Connection, experiment_id: int, *, decision: str, reason: str, now: datetime) -> None:
    """Mark a running experiment stopped with its decision (promoted, aborted, stopped) and reason."""
    if decision not in DECISIONS:
        raise ValueError(f"an experiment ends as one of {DECISIONS}, not {decision!r}.")
    t = EXPERIMENTS_TABLE
    conn.execute(update(t).where((t.c.id == experiment_id) & (t.c.status == "running"))
                 .values(status="stopped", stopped_at=now, decision=decision, reason=reason))


def activity(conn: Connection, since: datetime, until: datetime | None = None
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], datetime | None]:
    """What a report needs from the store: the lists served in [since, until) (user_id, ts, status,
    latency_ms, movie_ids), the watched rows (with max_minute) and ratings of their users, and the store's
    latest activity (the report's "now", as `evaluation online` judges pending lists)."""
    s = SERVED_TABLE.c
    stmt = select(s.user_id, s.ts, s.status, s.latency_ms, s.movie_ids).where(s.ts >= since).order_by(s.ts, s.user_id)
    if until is not None:
        stmt = stmt.where(s.ts < until)
    served = [{"user_id": int(u), "ts": ts, "status": int(status), "latency_ms": latency,
               "movie_ids": [m for m in (ids or "").split(",") if m]}
              for u, ts, status, latency, ids in conn.execute(stmt)]
    watched, ratings = activity_of_users(conn, (row["user_id"] for row in served))
    return served, watched, ratings, latest_activity(conn)
