"""Statements of the model lifecycle: versions, the active one, activations, and the training reads.

The training role writes these rows; the service reads the active one (`active_version`, one indexed
row, polled every few seconds); the evaluation and `training status|provenance` read them all. Every
function takes an open Connection; the caller owns the transaction. JSON fields are stored as text and
returned decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, union_all, update

from db_utils.models import EVENTS_TABLE, RATINGS_TABLE, SERVED_TABLE, VERSIONS_TABLE, WATCHED_TABLE

_JSON_FIELDS = ("rank_config", "collab_config", "watermark", "metrics")


@dataclass(frozen=True)
class VersionRow:
    """One model version as plain data (JSON fields decoded)."""

    id: int
    status: str
    reason: str | None
    created_at: datetime
    activated_at: datetime | None
    content_collection: str
    collab_collection: str | None
    rank_config: dict[str, Any]
    collab_config: dict[str, Any]
    watermark: dict[str, Any] = field(default_factory=dict)
    code_revision: str = "unknown"
    model_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    collections_dropped: bool = False

    @property
    def name(self) -> str:
        """The version's public name, as in X-Model-Version: `v<id>`."""
        return version_name(self.id)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able document of the row (times as ISO strings)."""
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__}
        doc["version"] = self.name
        for key in ("created_at", "activated_at"):
            doc[key] = doc[key].isoformat() if doc[key] is not None else None
        return doc


def version_name(version_id: int) -> str:
    """`v<id>`: the one rule for a version's public name."""
    return f"v{version_id}"


def parse_version_name(name: str) -> int:
    """The id of `v<id>` (or a bare id); ValueError with one sentence otherwise."""
    raw = name.strip().lower().removeprefix("v")
    if not raw.isdigit():
        raise ValueError(f"{name!r} is not a model version; versions look like v3.")
    return int(raw)


def _row(mapping: Any) -> VersionRow:
    values = dict(mapping)
    for key in _JSON_FIELDS:
        values[key] = json.loads(values[key]) if values[key] else {}
    values["collections_dropped"] = bool(values["collections_dropped"])
    return VersionRow(**values)


def _columns() -> list[Any]:
    return [VERSIONS_TABLE.c[name] for name in VersionRow.__dataclass_fields__]


def create_version(conn: Connection, *, content_collection: str, rank_config: dict[str, Any],
                   collab_config: dict[str, Any], code_revision: str, model_fingerprint: str,
                   now: datetime) -> int:
    """Insert a new `candidate` version and return its id (its collections are named from the id)."""
    result = conn.execute(VERSIONS_TABLE.insert().values(
        status="candidate", created_at=now, content_collection=content_collection, collab_collection=None,
        rank_config=json.dumps(rank_config, sort_keys=True), collab_config=json.dumps(collab_config, sort_keys=True),
        code_revision=code_revision, model_fingerprint=model_fingerprint, collections_dropped=False))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def update_version(conn: Connection, version_id: int, **values: Any) -> None:
    """Set fields of a version (JSON fields given as dicts)."""
    for key in _JSON_FIELDS:
        if key in values and values[key] is not None:
            values[key] = json.dumps(values[key], sort_keys=True, default=str)
    conn.execute(update(VERSIONS_TABLE).where(VERSIONS_TABLE.c.id == version_id).values(**values))


def get_version(conn: Connection, version_id: int) -> VersionRow | None:
    row = conn.execute(select(*_columns()).where(VERSIONS_TABLE.c.id == version_id)).mappings().first()
    return None if row is None else _row(row)


def list_versions(conn: Connection) -> list[VersionRow]:
    """Every version, newest first."""
    rows = conn.execute(select(*_columns()).order_by(VERSIONS_TABLE.c.id.desc())).mappings()
    return [_row(r) for r in rows]


def active_version(conn: Connection) -> VersionRow | None:
    """The active version, or None before the first promotion (one row through the unique index)."""
    stmt = select(*_columns()).where(VERSIONS_TABLE.c.status == "active")
    row = conn.execute(stmt).mappings().first()
    return None if row is None else _row(row)


def activate(conn: Connection, version_id: int, *, event: str, reason: str, now: datetime) -> int | None:
    """Make `version_id` the active version in the caller's transaction: the active one (if another) is
    retired first, so the unique index never sees two. Returns the id of the version it replaced."""
    t = VERSIONS_TABLE
    previous = conn.execute(select(t.c.id).where(t.c.status == "active")).scalar()
    if previous == version_id:
        return None
    if previous is not None:
        conn.execute(update(t).where(t.c.id == previous).values(status="retired"))
    conn.execute(update(t).where(t.c.id == version_id).values(status="active", activated_at=now, reason=reason))
    conn.execute(EVENTS_TABLE.insert().values(version_id=version_id, event=event, at=now, reason=reason))
    return previous


def activations(conn: Connection) -> list[dict[str, Any]]:
    """Every activation (promote, rollback), oldest first: version_id, event, at, reason."""
    e = EVENTS_TABLE.c
    return [dict(r) for r in conn.execute(select(e.version_id, e.event, e.at, e.reason).order_by(e.at, e.id))
            .mappings()]


def interaction_events(conn: Connection) -> list[tuple[int, str, datetime, datetime, int | None, bool]]:
    """Every (user, movie) the store holds as (user_id, movie_id, first time, last time, rating or None,
    watched): a watched row's first and last minute, a rating's time when the movie was only rated. The
    training role's snapshot for its temporal split, its fit and the gate."""
    w, r = WATCHED_TABLE.c, RATINGS_TABLE.c
    watched = (select(w.user_id, w.movie_id, w.first_ts, w.last_ts, r.rating)
               .select_from(WATCHED_TABLE.outerjoin(RATINGS_TABLE, (r.user_id == w.user_id)
                                                        & (r.movie_id == w.movie_id))))
    rated = (select(r.user_id, r.movie_id, r.ts, r.ts, r.rating)
             .select_from(RATINGS_TABLE.outerjoin(WATCHED_TABLE, (r.user_id == w.user_id)
                                                     & (r.movie_id == w.movie_id)))
             .where(w.user_id.is_(None)))
    out: list[tuple[int, str, datetime, datetime, int | None, bool]] = []
    for user_id, movie_id, first, last, rating in conn.execute(watched):
        out.append((int(user_id), str(movie_id), first, last, None if rating is None else int(rating), True))
    for user_id, movie_id, first, last, rating in conn.execute(rated):
        out.append((int(user_id), str(movie_id), first, last, int(rating), False))
    return out


def store_watermark(conn: Connection) -> dict[str, Any]:
    """The store's extent right now: the newest event time and the row counts of the event tables."""
    w, r = WATCHED_TABLE.c, RATINGS_TABLE.c
    latest = conn.execute(select(func.max(union_all(select(func.max(w.last_ts)), select(func.max(r.ts)))
                                          .subquery().c[0]))).scalar()
    counts = {name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
              for name, table in (("watched", WATCHED_TABLE), ("ratings", RATINGS_TABLE),
                                  ("recommendations_served", SERVED_TABLE))}
    return {"latest_event": latest.isoformat() if isinstance(latest, datetime) else latest, "rows": counts}
