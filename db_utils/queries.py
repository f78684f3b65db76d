"""Every SQL statement of the project: history and popularity reads, and idempotent bulk upserts.

All functions take an open ``sqlalchemy.Connection``; the caller owns the transaction
(``with engine.begin() as conn: ...``). Statements are parameterized. Upserts are idempotent: applying the
same rows twice, or split into batches differently (in the same order), leaves the same state, because each
column merges with a fixed rule (max, min, latest wins, first wins). Unknown users and movies are
registered by the upserts themselves, so the order in which the stream arrives never matters.

SQLite and PostgreSQL use ``INSERT ... ON CONFLICT``; SQL Server (Azure SQL) uses ``MERGE``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict, cast

from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from db_utils.models import (
    MOVIES_TABLE,
    RATINGS_TABLE,
    RAW_LINE_CAP,
    REJECTED_TABLE,
    SERVED_TABLE,
    USERS_TABLE,
    WATCHED_TABLE,
)

# ---------------------------------------------------------------------------------------------- row types


class UserRow(TypedDict):
    id: int
    first_seen: datetime | None
    last_seen: datetime | None
    age: NotRequired[int | None]
    occupation: NotRequired[str | None]
    gender: NotRequired[str | None]


class WatchRow(TypedDict):
    user_id: int
    movie_id: str
    minute: int
    ts: datetime


class RatingRow(TypedDict):
    user_id: int
    movie_id: str
    rating: int
    ts: datetime


class ServedRow(TypedDict):
    user_id: int
    ts: datetime
    server: str
    status: int
    latency_ms: float
    movie_ids: Sequence[str]


class RejectedRow(TypedDict):
    source: str
    offset: int | None
    raw: str
    reason: str
    ts: datetime


@dataclass(frozen=True)
class HistoryItem:
    """One movie in a user's history: when it was last watched (or rated) and the rating, if any."""

    movie_id: str
    ts: datetime
    rating: int | None


# --------------------------------------------------------------------------------------------- merge rules

Merge = Literal["max", "min", "replace", "coalesce", "keep"]
"""How a column of an existing row takes a new value: the larger, the smaller, the new one, the new one
unless it is NULL, or the old one (first write wins)."""


@dataclass(frozen=True)
class UpsertSpec:
    """What an upsert into ``table`` does on a key conflict: ``merges`` maps each non-key column to its rule;
    ``newer`` names (time, tie-break) columns when the whole row is replaced only by a newer one."""

    table: Table
    keys: tuple[str, ...]
    merges: dict[str, Merge]
    newer: tuple[str, str] | None = None


USERS = UpsertSpec(USERS_TABLE, ("id",), {
    "first_seen": "min", "last_seen": "max", "age": "coalesce", "occupation": "coalesce", "gender": "coalesce",
})
WATCHED = UpsertSpec(WATCHED_TABLE, ("user_id", "movie_id"),
                     {"max_minute": "max", "first_ts": "min", "last_ts": "max"})
RATINGS = UpsertSpec(RATINGS_TABLE, ("user_id", "movie_id"), {"rating": "replace", "ts": "replace"},
                     newer=("ts", "rating"))
SERVED = UpsertSpec(SERVED_TABLE, ("user_id", "ts"), {
    "server": "keep", "status": "keep", "latency_ms": "keep", "movie_ids": "keep",
})
MOVIE_FIELDS = ("title", "year", "genres", "overview", "tagline", "keywords", "popularity", "vote_average",
                "vote_count", "runtime", "original_language", "release_date", "content_hash", "updated_at")


_PY_MERGE = {
    # rule -> (statement for a NOT NULL column, statement for a nullable one); {o} is the kept value (an item
    # of the list kept so far, in column order), {v} the new value. NULL never wins a max or a min.
    "max": ("if {v} > {o}: {o} = {v}", "if {v} is not None and ({o} is None or {v} > {o}): {o} = {v}"),
    "min": ("if {v} < {o}: {o} = {v}", "if {v} is not None and ({o} is None or {v} < {o}): {o} = {v}"),
    "replace": ("{o} = {v}", "{o} = {v}"),
    "coalesce": ("if {v} is not None: {o} = {v}", "if {v} is not None: {o} = {v}"),
    "keep": ("", ""),
}

Fold = Any
"""``fold(acc, key, *values)``: merge one row (its key and its values in the folder's column order) into
``acc``, a dict from key to the list of values kept so far. Returns None."""

_folders: dict[tuple, Fold] = {}


def folder(spec: UpsertSpec, columns: Sequence[str]) -> Fold:
    """The spec's merge rules compiled into one Python function over ``columns`` (non-key columns, in order).

    The pure form of the rules, used to pre-aggregate a batch before it reaches SQL (``aggregate``, and the
    parser's batch fold): generated once per (spec, columns) so that a fold costs one call and a few
    comparisons a row, as fast as a hand-written one, with the spec the single owner of every rule."""
    cache_key = (spec.table.name, spec.keys, tuple(spec.merges.items()), spec.newer, tuple(columns))
    fold = _folders.get(cache_key)
    if fold is not None:
        return fold
    params = [f"v{n}" for n in range(len(columns))]
    body = [f"def fold(acc, key, {', '.join(params)}):" if params else "def fold(acc, key):",
            "    o = acc.get(key)",
            "    if o is None:",
            f"        acc[key] = [{', '.join(params)}]",
            "        return"]
    if spec.newer is not None:
        t, tie = (columns.index(c) for c in spec.newer)
        body.append(f"    if (v{t}, v{tie}) > (o[{t}], o[{tie}]): acc[key] = [{', '.join(params)}]")
    else:
        for n, col in enumerate(columns):
            nullable = spec.table.c[col].nullable
            line = _PY_MERGE[spec.merges[col]][1 if nullable else 0]
            if line:
                body.append("    " + line.format(o=f"o[{n}]", v=f"v{n}"))
    source = "\n".join(body)  # built from column indices and the fixed templates above only
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<fold {spec.table.name}>", "exec"), namespace)
    fold = _folders[cache_key] = namespace["fold"]
    fold.source = source  # for a reader or a debugger: what the spec compiled to
    return fold


def aggregate(spec: UpsertSpec, rows: Iterable[dict]) -> list[dict]:
    """Fold rows with the same key into one, with the spec's rules (in input order). Pure.

    Every row must carry the columns of the first one."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return []
    columns = [c for c in first if c not in spec.keys]
    fold = folder(spec, columns)
    acc: dict[tuple, list] = {}
    for row in itertools.chain((first,), rows):
        fold(acc, tuple(row[k] for k in spec.keys), *(row[c] for c in columns))
    return [{**dict(zip(spec.keys, key, strict=True)), **dict(zip(columns, values, strict=True))}
            for key, values in acc.items()]


# ------------------------------------------------------------------------------------ dialect statements


def _sql_merge(dialect: str, rule: Merge, old: ColumnElement, new: ColumnElement) -> ColumnElement:
    if rule == "replace":
        return new
    if rule == "coalesce":
        return func.coalesce(new, old)
    if rule == "keep":
        return old
    a, b = func.coalesce(old, new), func.coalesce(new, old)
    if dialect == "sqlite":  # SQLite's two-argument max()/min() are scalar
        return func.max(a, b) if rule == "max" else func.min(a, b)
    return func.greatest(a, b) if rule == "max" else func.least(a, b)


def _on_conflict_statement(dialect: str, spec: UpsertSpec, columns: Sequence[str]) -> sqlite.Insert | postgresql.Insert:
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    stmt = insert(spec.table)
    excluded = stmt.excluded
    target = spec.table.c
    updates = {c: _sql_merge(dialect, spec.merges[c], target[c], excluded[c])
               for c in columns if c in spec.merges and spec.merges[c] != "keep"}
    if not updates:
        return stmt.on_conflict_do_nothing(index_elements=list(spec.keys))
    where = None
    if spec.newer is not None:
        t, tie = spec.newer
        where = or_(excluded[t] > target[t], and_(excluded[t] == target[t], excluded[tie] > target[tie]))
    return stmt.on_conflict_do_update(index_elements=list(spec.keys), set_=updates, where=where)


def _mssql_merge_template(rule: Merge, col: str) -> str | None:
    old, new = f"t.[{col}]", f"s.[{col}]"
    return {
        "replace": new,
        "coalesce": f"COALESCE({new}, {old})",
        "keep": None,
        "max": f"GREATEST(COALESCE({old}, {new}), COALESCE({new}, {old}))",
        "min": f"LEAST(COALESCE({old}, {new}), COALESCE({new}, {old}))",
    }[rule]


def merge_statement_mssql(spec: UpsertSpec, columns: Sequence[str]) -> str:
    """The SQL Server ``MERGE`` equivalent of the ``ON CONFLICT`` upsert, with named parameters.

    ``HOLDLOCK`` makes the match-then-insert atomic under concurrent writers."""
    name = spec.table.name
    cols = ", ".join(f"[{c}]" for c in columns)
    params = ", ".join(f":{c}" for c in columns)
    on = " AND ".join(f"t.[{k}] = s.[{k}]" for k in spec.keys)
    sets = [f"t.[{c}] = {tpl}" for c in columns if c in spec.merges
            and (tpl := _mssql_merge_template(spec.merges[c], c)) is not None]
    matched = ""
    if sets:
        cond = ""
        if spec.newer is not None:
            t, tie = spec.newer
            cond = f" AND (s.[{t}] > t.[{t}] OR (s.[{t}] = t.[{t}] AND s.[{tie}] > t.[{tie}]))"
        matched = f" WHEN MATCHED{cond} THEN UPDATE SET {', '.join(sets)}"
    values = ", ".join(f"s.[{c}]" for c in columns)
    return (f"MERGE INTO [{name}] WITH (HOLDLOCK) AS t USING (VALUES ({params})) AS s ({cols}) ON {on}"
            f"{matched} WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values});")


def _sqlite_datetime(fallback: Any) -> Any:
    """SQLite's DateTime bind processor with a fast path for naive datetimes (``isoformat`` writes the very
    text SQLAlchemy's processor writes, ``YYYY-MM-DD HH:MM:SS.ffffff``; a property test holds them equal);
    anything else takes SQLAlchemy's own processor."""

    def process(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return fallback(value)

    return process


_raw_upserts: dict[tuple, tuple[str, Any]] = {}


def _raw_upsert_plan(dialect: Dialect, spec: UpsertSpec, columns: Sequence[str]) -> tuple[str, Any]:
    """The ON CONFLICT statement compiled once as the driver's positional SQL, and a function from a row
    dict to the driver's parameter tuple (SQLAlchemy's bind processors applied, generated per column list).

    The parser writes tens of thousands of rows a second: SQLAlchemy's per-row parameter processing cost
    as much as the database's own executemany (docs/benchmarks.md); this runs the same statement, with the
    same values, on the DBAPI cursor of the same transaction."""
    key = (dialect.name, spec.table.name, spec.keys, tuple(spec.merges.items()), spec.newer, tuple(columns))
    plan = _raw_upserts.get(key)
    if plan is not None:
        return plan
    # every concrete dialect is a DefaultDialect, which takes the paramstyle
    positional = dialect if dialect.positional else cast("type[DefaultDialect]", type(dialect))(paramstyle="format")
    compiled = _on_conflict_statement(dialect.name, spec, columns).compile(dialect=positional, column_keys=columns)
    order = list(compiled.positiontup or ())
    if sorted(order) != sorted(columns):
        raise RuntimeError(f"unexpected parameters {order} in the {spec.table.name} upsert")
    processors: dict[str, Any] = {}
    for name in order:
        col_type = spec.table.c[name].type
        proc = col_type.dialect_impl(dialect).bind_processor(dialect)
        if proc is not None:
            is_datetime = dialect.name == "sqlite" and col_type._type_affinity is DateTime
            processors[name] = _sqlite_datetime(proc) if is_datetime else proc
    items = [f"p_{name}(r[{name!r}])" if name in processors else f"r[{name!r}]" for name in order]
    namespace: dict[str, Any] = {f"p_{name}": proc for name, proc in processors.items()}
    exec(compile(f"def to_params(r):\n    return ({', '.join(items)},)", f"<params {spec.table.name}>", "exec"),
         namespace)
    plan = _raw_upserts[key] = (str(compiled), namespace["to_params"])
    return plan


def _execute_upsert(conn: Connection, spec: UpsertSpec, rows: Sequence[Mapping[str, Any]]) -> int:
    if not rows:
        return 0
    columns = list(rows[0].keys())
    dialect = conn.dialect.name
    if dialect == "mssql":
        conn.execute(text(merge_statement_mssql(spec, columns)), rows)
    elif dialect in ("sqlite", "postgresql"):
        sql, to_params = _raw_upsert_plan(conn.dialect, spec, columns)
        # driver SQL: no compile and no parameter processing, but SQLAlchemy's error translation and
        # connection invalidation still apply (the parser retries on OperationalError)
        conn.exec_driver_sql(sql, list(map(to_params, rows)))
    else:
        raise NotImplementedError(f"the SQL store does not support the {dialect} dialect")
    return len(rows)


def _normalise(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Give every row exactly ``columns`` (missing ones as None) so executemany sees one shape."""
    return [{c: row.get(c) for c in columns} for row in rows]


# --------------------------------------------------------------------------------------------- upserts


def upsert_users(conn: Connection, rows: Iterable[UserRow]) -> int:
    """Insert or merge users: first_seen keeps the earliest, last_seen the latest; demographics are replaced
    by known (non-NULL) values. Returns the number of distinct users written."""
    columns = ("id", "first_seen", "last_seen", "age", "occupation", "gender")
    return _execute_upsert(conn, USERS, aggregate(USERS, _normalise(rows, columns)))


def _users_seen(rows: Iterable[Mapping[str, Any]], ts_column: str = "ts") -> list[UserRow]:
    return [{"id": r["user_id"], "first_seen": r[ts_column], "last_seen": r[ts_column], "age": None,
             "occupation": None, "gender": None} for r in rows]


def ensure_movies(conn: Connection, ids: Iterable[str]) -> int:
    """Register movie ids that are not in the catalog yet (title NULL: awaiting metadata). Existing rows
    are left alone."""
    spec = UpsertSpec(MOVIES_TABLE, ("id",), {})
    rows = [{"id": i} for i in dict.fromkeys(ids)]
    return _execute_upsert(conn, spec, rows)


def upsert_movies(conn: Connection, rows: Iterable[dict]) -> int:
    """Insert or replace catalog entries. Each row has ``id`` and any of the catalog fields; the fields a
    batch names are replaced (latest catalog wins); ``embedded_hash`` is never touched here."""
    rows = list(rows)
    if not rows:
        return 0
    present = [f for f in MOVIE_FIELDS if any(f in r for r in rows)]
    spec = UpsertSpec(MOVIES_TABLE, ("id",), dict.fromkeys(present, "replace"))
    batch = aggregate(spec, _normalise(rows, ("id", *present)))
    return _execute_upsert(conn, spec, batch)


def upsert_watches(conn: Connection, rows: Iterable[WatchRow]) -> int:
    """Record watched minutes: per user and movie the furthest minute and the first and last minute's
    time. Registers unknown users and movies. Returns the number of distinct (user, movie) pairs."""
    rows = list(rows)
    if not rows:
        return 0
    upsert_users(conn, _users_seen(rows))
    ensure_movies(conn, (r["movie_id"] for r in rows))
    batch = aggregate(WATCHED, ({"user_id": r["user_id"], "movie_id": r["movie_id"], "max_minute": r["minute"],
                                 "first_ts": r["ts"], "last_ts": r["ts"]} for r in rows))
    return _execute_upsert(conn, WATCHED, batch)


def upsert_ratings(conn: Connection, rows: Iterable[RatingRow]) -> int:
    """Record ratings; the one with the latest time wins (same time: the higher rating, so that the outcome
    never depends on arrival order). Registers unknown users and movies."""
    rows = list(rows)
    if not rows:
        return 0
    upsert_users(conn, _users_seen(rows))
    ensure_movies(conn, (r["movie_id"] for r in rows))
    batch = aggregate(RATINGS, _normalise(rows, ("user_id", "movie_id", "rating", "ts")))
    return _execute_upsert(conn, RATINGS, batch)


def upsert_served(conn: Connection, rows: Iterable[ServedRow]) -> int:
    """Record served recommendation lists, keyed by user and time; a repeated key keeps the first list."""
    rows = list(rows)
    if not rows:
        return 0
    upsert_users(conn, _users_seen(rows))
    batch = aggregate(SERVED, ({"user_id": r["user_id"], "ts": r["ts"], "server": r["server"],
                                "status": r["status"], "latency_ms": r["latency_ms"],
                                "movie_ids": ",".join(r["movie_ids"])} for r in rows))
    return _execute_upsert(conn, SERVED, batch)


def insert_rejected(conn: Connection, rows: Iterable[RejectedRow]) -> int:
    """Store rejected lines with their reason; raw text is capped at RAW_LINE_CAP characters."""
    table = REJECTED_TABLE
    batch = [{"source": r["source"][:255], "source_offset": r["offset"], "raw": r["raw"][:RAW_LINE_CAP],
              "reason": r["reason"][:64], "ts": r["ts"]} for r in rows]
    if batch:
        conn.execute(table.insert(), batch)
    return len(batch)


# ----------------------------------------------------------------------------------------------- reads


def _history_rows() -> Any:
    """A user's history as rows (movie_id, ts, rating), unordered: watched movies with their rating, if
    any, and movies only rated (bound parameter user_id)."""
    w, r = WATCHED_TABLE.c, RATINGS_TABLE.c
    user_id: BindParameter[Any] = bindparam("user_id")
    watched = (select(w.movie_id.label("movie_id"), w.last_ts.label("ts"), r.rating.label("rating"))
               .select_from(WATCHED_TABLE.outerjoin(
                   RATINGS_TABLE, and_(r.user_id == w.user_id, r.movie_id == w.movie_id)))
               .where(w.user_id == user_id))
    rated_only = (select(r.movie_id, r.ts, r.rating)
                  .where(r.user_id == user_id)
                  .where(~exists().where(and_(w.user_id == r.user_id, w.movie_id == r.movie_id))))
    return union_all(watched, rated_only).subquery("history")


@functools.cache
def _user_history_statement() -> Any:
    """The history query, built once with bound parameters: building the statement per call cost the
    service about 0.6 ms a request (the SQL itself runs in about 0.03 ms on SQLite)."""
    both = _history_rows()
    return select(both.c.movie_id, both.c.ts, both.c.rating).order_by(
        both.c.ts.desc(), both.c.movie_id).limit(bindparam("limit"))


def user_history(conn: Connection, user_id: int, limit: int = 50) -> list[HistoryItem]:
    """The user's most recent ``limit`` movies, watched or only rated, most recent first, with the rating
    or None. One round trip."""
    rows = conn.execute(_user_history_statement(), {"user_id": user_id, "limit": limit})
    return [HistoryItem(m, ts, rating) for m, ts, rating in rows]


@functools.cache
def _compiled(stmt: Any, dialect: Dialect, names: tuple[str, ...]) -> tuple[str, list[str] | None, dict[str, Any]]:
    """A statement as the dialect's SQL text, the order of its positional parameters (None when the driver
    takes named ones), and the values of the parameters SQLAlchemy adds itself (SQLite's OFFSET)."""
    compiled = stmt.compile(dialect=dialect)
    defaults = {k: v for k, v in compiled.construct_params(dict.fromkeys(names, 0)).items() if k not in names}
    return str(compiled), compiled.positiontup, defaults


def _execute_dbapi(cursor: Any, dialect: Dialect, stmt: Any, values: dict[str, Any]) -> list[Any]:
    """A statement built once on a raw DBAPI cursor (compiled once per dialect): what this skips is
    SQLAlchemy's per-call execution context and result processing, which cost the service more than the
    query itself on SQLite (docs/benchmarks.md). For the request path only."""
    sql, order, defaults = _compiled(stmt, dialect, tuple(values))
    values = {**defaults, **values}
    cursor.execute(sql, values if order is None else tuple(values[name] for name in order))
    return cursor.fetchall()


def user_history_dbapi(cursor: Any, dialect: Dialect, user_id: int, limit: int = 50) -> list[tuple[str, Any]]:
    """`user_history`'s statement on a raw DBAPI cursor, as (movie_id, rating) rows, most recent first."""
    rows = _execute_dbapi(cursor, dialect, _user_history_statement(), {"user_id": user_id, "limit": limit})
    return [(row[0], row[2]) for row in rows]


SEEN_SEPARATOR = ","
"""Between the ids of `recent_and_seen_dbapi`'s aggregated row: the separator of every id list the
project stores or serves (`recommendations_served.movie_ids`, the answer body), so no movie id holds one."""


class _StringAgg(FunctionElement[str]):
    """The string aggregate of one column joined by SEEN_SEPARATOR: group_concat on SQLite, string_agg on
    PostgreSQL, STRING_AGG over NVARCHAR(MAX) on SQL Server (so 4,000 characters do not cap it)."""

    type = String()
    name = "string_agg"
    inherit_cache = True


@compiles(_StringAgg)
def _string_agg_default(element: _StringAgg, compiler: Any, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, '{SEEN_SEPARATOR}')"


@compiles(_StringAgg, "sqlite")
def _string_agg_sqlite(element: _StringAgg, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, '{SEEN_SEPARATOR}')"


@compiles(_StringAgg, "mssql")
def _string_agg_mssql(element: _StringAgg, compiler: Any, **kw: Any) -> str:
    return f"STRING_AGG(CAST({compiler.process(element.clauses, **kw)} AS NVARCHAR(MAX)), '{SEEN_SEPARATOR}')"


def _number(value: int) -> Any:
    """A limit written into the SQL text (so SQL Server's TOP needs no value at execution)."""
    return literal_column(str(int(value)))


@functools.cache
def recent_and_seen_statement(recent: int, seen_limit: int, lookups: bool = False) -> Any:
    """The request's one statement (bound parameter user_id), sorted once: first one row (part 0) whose
    movie_id holds the ids of the whole history joined by SEEN_SEPARATOR (the watched ids, then the rated
    ones, at most `seen_limit` of each, the first by id; a movie in both listed twice; a separator at
    either end when a table has none), then the `recent` most recent movies with their ratings (part 1,
    most recent first, ties by id).

    The newest come from the watches no older than the `recent`-th newest watch (a range of the (user,
    time) index: the newest `recent` and their ties, whatever the history's length) and the newest
    `recent` movies only rated from that time on; the union is sorted once with the id row and cut at
    `recent` + 1 rows. The ids come from the two tables' primary keys alone: no join, no sort, no
    timestamp; a long history leaves the database as one string instead of a row per movie.

    `lookups` (servers): a movie's rating and whether a rated movie was watched are correlated
    primary-key lookups instead of a join and an anti-join. PostgreSQL's generic plan, estimated on the
    average history, joined them by filtering the user's whole other table for every row (28 to 433 ms for a
    2,391-movie history, docs/benchmarks.md); a lookup per row costs the same for every history. SQLite
    looks joins up by primary key anyway, and its join is cheaper. Built once per arguments, the numbers
    written into the SQL."""
    w, r = WATCHED_TABLE.c, RATINGS_TABLE.c
    user_id: BindParameter[Any] = bindparam("user_id")
    # Only a watch no older than the `recent`-th newest one (or, with fewer watches, any) can be among the
    # newest; a movie only rated can be only from that time on (or, with no watch, any).
    nth_watch = (select(w.last_ts).where(w.user_id == user_id).order_by(w.last_ts.desc())
                 .offset(_number(recent - 1)).limit(_number(1)).correlate(None).scalar_subquery())
    first_watch = select(func.min(w.last_ts)).where(w.user_id == user_id).correlate(None).scalar_subquery()
    first_rating = select(func.min(r.ts)).where(r.user_id == user_id).correlate(None).scalar_subquery()
    if lookups:
        rating: Any = select(r.rating).where(r.user_id == w.user_id, r.movie_id == w.movie_id).scalar_subquery()
        watched = select(w.movie_id.label("movie_id"), rating.label("rating"), w.last_ts.label("ts"))
        not_watched: Any = (select(w.movie_id).where(w.user_id == r.user_id, w.movie_id == r.movie_id)
                            .scalar_subquery().is_(None))
    else:
        watched = (select(w.movie_id.label("movie_id"), r.rating.label("rating"), w.last_ts.label("ts"))
                   .select_from(WATCHED_TABLE.outerjoin(
                       RATINGS_TABLE, and_(r.user_id == w.user_id, r.movie_id == w.movie_id))))
        not_watched = ~exists().where(and_(w.user_id == r.user_id, w.movie_id == r.movie_id))
    watched = watched.add_columns(literal_column("1").label("part")).where(
        w.user_id == user_id, w.last_ts >= func.coalesce(nth_watch, first_watch))
    rated_only = (select(r.movie_id, r.rating, r.ts)
                  .where(r.user_id == user_id, r.ts >= func.coalesce(nth_watch, first_rating), not_watched)
                  .order_by(r.ts.desc(), r.movie_id).limit(_number(recent)).subquery("newest_rated"))
    # Each table's ids in its primary key's order (a covering index scan, no sort and no dedup: a movie
    # both watched and rated is listed twice, which measured cheaper than an anti-join on SQLite and
    # PostgreSQL), aggregated into one string per table, the two joined.
    empty: Any = literal_column("''")
    separator: Any = literal_column(f"'{SEEN_SEPARATOR}'")
    strings = [func.coalesce(select(_StringAgg(part.c.movie_id)).scalar_subquery(), empty) for part in (
        select(t.c.movie_id).where(t.c.user_id == user_id).order_by(t.c.movie_id).limit(_number(seen_limit))
        .subquery(f"{t.name}_ids") for t in (WATCHED_TABLE, RATINGS_TABLE))]
    seen: Any = select(strings[0].concat(separator).concat(strings[1]).label("movie_id"), null().label("rating"),
                       null().label("ts"), literal_column("0").label("part"))
    parts = union_all(seen, watched, select(rated_only.c.movie_id, rated_only.c.rating, rated_only.c.ts,
                                            literal_column("1"))).subquery("parts")
    return (select(parts.c.movie_id, parts.c.rating).order_by(parts.c.part, parts.c.ts.desc(), parts.c.movie_id)
            .limit(_number(recent + 1)))


def recent_and_seen_dbapi(cursor: Any, dialect: Dialect, user_id: int, recent: int = 50, seen_limit: int = 30_000,
                          lookups: bool | None = None) -> tuple[list[tuple[str, Any]], str]:
    """In one round trip on a raw DBAPI cursor: the user's `recent` most recent movies as (movie_id, rating)
    rows, most recent first (what `user_history` gives), and the ids of the whole history (at most
    `seen_limit` watched and `seen_limit` rated ones, the first by id beyond that) as one
    SEEN_SEPARATOR-joined string, possibly with repeats ("" for an unknown user). The request path's
    history read (`inference.sources.SqlHistorySource`). `lookups` (default: on every dialect but SQLite)
    chooses the statement's form (`recent_and_seen_statement`)."""
    stmt = recent_and_seen_statement(recent, seen_limit, dialect.name != "sqlite" if lookups is None else lookups)
    (seen, _), *ranked = _execute_dbapi(cursor, dialect, stmt, {"user_id": user_id})
    return ranked, seen.strip(SEEN_SEPARATOR)


def popular_movies(conn: Connection, limit: int = 100, since: datetime | None = None) -> list[tuple[str, int]]:
    """Movies by the number of distinct users who watched them (since ``since`` when given), most first;
    ties by id so the list is stable."""
    w = WATCHED_TABLE.c
    viewers = func.count().label("viewers")
    stmt = select(w.movie_id, viewers).group_by(w.movie_id)
    if since is not None:
        stmt = stmt.where(w.last_ts >= since)
    stmt = stmt.order_by(viewers.desc(), w.movie_id).limit(limit)
    return [(m, int(n)) for m, n in conn.execute(stmt)]


def count_rows(conn: Connection, table: str) -> int:
    """Rows in one of the store's tables (for progress lines, health checks and tests)."""
    known = {t.name: t for t in (MOVIES_TABLE, USERS_TABLE, WATCHED_TABLE, RATINGS_TABLE,
                                 SERVED_TABLE, REJECTED_TABLE)}
    if table not in known:
        raise ValueError(f"unknown table {table!r}")
    return int(conn.execute(select(func.count()).select_from(known[table])).scalar_one())


# ------------------------------------------------------------------------------- stream batches (parser)


class WatchedRow(TypedDict):
    user_id: int
    movie_id: str
    max_minute: int
    first_ts: datetime
    last_ts: datetime


def upsert_stream_batch(
    conn: Connection,
    *,
    users: Sequence[UserRow] = (),
    movie_ids: Sequence[str] = (),
    watched: Sequence[WatchedRow] = (),
    ratings: Sequence[RatingRow] = (),
    served: Sequence[ServedRow] = (),
) -> None:
    """Apply one pre-aggregated batch of stream events: one statement per table, parents first.

    The parser's fast path. Each sequence must already hold one row per key, folded with the same rules as
    the single upserts (users first/last seen; watched max minute and first/last time; the latest rating,
    the higher on equal times; the first served list per user and time), and ``users``/``movie_ids`` must
    name every user and movie the other rows refer to. The effect equals ``upsert_watches``,
    ``upsert_ratings`` and ``upsert_served`` on the unaggregated rows."""
    if users:
        _execute_upsert(conn, USERS, [{"id": u["id"], "first_seen": u["first_seen"],
                                       "last_seen": u["last_seen"]} for u in users])
    if movie_ids:
        ensure_movies(conn, movie_ids)
    if watched:
        _execute_upsert(conn, WATCHED, list(watched))
    if ratings:
        _execute_upsert(conn, RATINGS, list(ratings))
    if served:
        _execute_upsert(conn, SERVED, [{**s, "movie_ids": ",".join(s["movie_ids"])} for s in served])



def prune_rejected(conn: Connection, keep: int) -> int:
    """Delete all but the newest ``keep`` rejected lines (by id), so the audit table stays bounded in size
    whatever the stream sends. Returns the number of rows deleted."""
    table = REJECTED_TABLE
    cutoff = conn.execute(select(table.c.id).order_by(table.c.id.desc()).offset(keep).limit(1)).scalar()
    if cutoff is None:
        return 0
    return conn.execute(table.delete().where(table.c.id <= cutoff)).rowcount


def known_stream_ids(conn: Connection, limit: int) -> tuple[list[int], list[str]]:
    """Up to ``limit`` user ids and movie ids the store knows (the parser's drift statistics start from them,
    so that a restart does not count every returning user as new)."""
    u, m = USERS_TABLE.c, MOVIES_TABLE.c
    users = list(conn.execute(select(u.id).limit(limit)).scalars())
    movies = list(conn.execute(select(m.id).limit(limit)).scalars())
    return users, movies


def stream_quality_rows(conn: Connection, since: datetime) -> dict[str, list[tuple]]:
    """What the store keeps of the stream since ``since``, for ``data_parsing quality``: watched pairs
    (user, movie, max_minute, last_ts), ratings (user, movie, rating, ts), served requests (user, ts, status,
    latency_ms), stored rejects (reason, ts), and the first appearance of users and of movies at or after
    ``since`` (id, time)."""
    w, r, s = WATCHED_TABLE.c, RATINGS_TABLE.c, SERVED_TABLE.c
    rej, u = REJECTED_TABLE.c, USERS_TABLE.c
    both = union_all(select(w.movie_id.label("movie_id"), w.first_ts.label("ts")),
                     select(r.movie_id, r.ts)).subquery()
    first_ts = func.min(both.c.ts)
    queries = {
        "watched": select(w.user_id, w.movie_id, w.max_minute, w.last_ts).where(w.last_ts >= since),
        "ratings": select(r.user_id, r.movie_id, r.rating, r.ts).where(r.ts >= since),
        "served": select(s.user_id, s.ts, s.status, s.latency_ms).where(s.ts >= since),
        "rejected": select(rej.reason, rej.ts).where(rej.ts >= since),
        "user_first": select(u.id, u.first_seen).where(u.first_seen >= since),
        "movie_first": select(both.c.movie_id, first_ts).group_by(both.c.movie_id).having(first_ts >= since),
    }
    return {name: [tuple(row) for row in conn.execute(stmt)] for name, stmt in queries.items()}

# ------------------------------------------------------------------------------------- embeddings job

EMBED_FIELDS = ("id", "title", "year", "genres", "overview", "tagline", "keywords", "popularity", "content_hash")


def movies_to_embed(conn: Connection) -> list[dict[str, Any]]:
    """Movies whose vector is missing or stale: never embedded (``embedded_hash`` NULL, which includes
    movies the parser registered without a title), or whose catalog text changed since
    (``content_hash`` set and different from ``embedded_hash``). Rows carry the fields the text needs."""
    m = MOVIES_TABLE.c
    stmt = (select(*(m[f] for f in EMBED_FIELDS))
            .where(or_(m.embedded_hash.is_(None),
                       and_(m.content_hash.is_not(None), m.content_hash != m.embedded_hash)))
            .order_by(m.id))
    return [dict(row._mapping) for row in conn.execute(stmt)]


def mark_embedded(conn: Connection, rows: Iterable[tuple[str, str | None]]) -> int:
    """Set ``embedded_hash`` for (movie id, hash) pairs: the hash of the text whose vector is now stored,
    or None to say the vector is gone and must be rebuilt. Returns the number of pairs applied."""
    batch = [{"movie_id": movie_id, "hash": digest} for movie_id, digest in rows]
    if batch:
        table = MOVIES_TABLE
        stmt = (table.update().where(table.c.id == bindparam("movie_id"))
                .values(embedded_hash=bindparam("hash")))
        conn.execute(stmt, batch)
    return len(batch)


def movie_embedded_hashes(conn: Connection) -> dict[str, str | None]:
    """Every movie id with its ``embedded_hash`` (None when it has no vector yet)."""
    m = MOVIES_TABLE.c
    return {movie_id: digest for movie_id, digest in conn.execute(select(m.id, m.embedded_hash))}


def untitled_movie_ids(conn: Connection) -> list[str]:
    """Ids of movies registered from the stream that still lack catalog metadata (title NULL)."""
    m = MOVIES_TABLE.c
    return list(conn.execute(select(m.id).where(m.title.is_(None)).order_by(m.id)).scalars())


# --------------------------------------------------------------------------- evaluation reads (issue 6)


def interaction_pairs(conn: Connection) -> list[tuple[int, str]]:
    """Every distinct (user id, movie id) the user watched or rated: the user-item matrix of the
    collaborative item vectors and of the offline baselines. Sorted, so builds are deterministic."""
    w, r = WATCHED_TABLE.c, RATINGS_TABLE.c
    both = union_all(select(w.user_id, w.movie_id), select(r.user_id, r.movie_id)).subquery()
    stmt = select(both.c.user_id, both.c.movie_id).distinct().order_by(both.c.user_id, both.c.movie_id)
    return [(int(u), str(m)) for u, m in conn.execute(stmt)]


def served_recommendations(conn: Connection, since: datetime | None = None,
                           until: datetime | None = None) -> list[dict[str, Any]]:
    """Served recommendation lists with ``since <= ts < until`` (either bound optional), oldest first:
    dicts with user_id, ts, status and movie_ids (a list)."""
    s = SERVED_TABLE.c
    stmt = select(s.user_id, s.ts, s.status, s.movie_ids).order_by(s.ts, s.user_id)
    if since is not None:
        stmt = stmt.where(s.ts >= since)
    if until is not None:
        stmt = stmt.where(s.ts < until)
    return [{"user_id": int(u), "ts": ts, "status": int(status), "movie_ids": [m for m in (ids or "").split(",") if m]}
            for u, ts, status, ids in conn.execute(stmt)]


_ID_CHUNK = 500


def activity_of_users(conn: Connection, user_ids: Iterable[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Watched rows (user_id, movie_id, first_ts, last_ts, max_minute) and ratings (user_id, movie_id,
    rating, ts) of the given users, read in chunks of ids so the parameter count stays bounded on every
    dialect."""
    w, r = WATCHED_TABLE.c, RATINGS_TABLE.c
    ids = sorted(set(user_ids))
    watched: list[dict[str, Any]] = []
    ratings: list[dict[str, Any]] = []
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start:start + _ID_CHUNK]
        watched.extend(dict(row._mapping) for row in conn.execute(
            select(w.user_id, w.movie_id, w.first_ts, w.last_ts, w.max_minute).where(w.user_id.in_(chunk))))
        ratings.extend(dict(row._mapping) for row in conn.execute(
            select(r.user_id, r.movie_id, r.rating, r.ts).where(r.user_id.in_(chunk))))
    return watched, ratings


def latest_activity(conn: Connection) -> datetime | None:
    """The time of the newest watch, rating or served list in the store (the evaluation's "now", so a
    replayed historical stream is judged on its own clock); None for an empty store."""
    w, r, s = WATCHED_TABLE.c, RATINGS_TABLE.c, SERVED_TABLE.c
    values = [conn.execute(select(func.max(col))).scalar_one() for col in (w.last_ts, r.ts, s.ts)]
    present = [v for v in values if v is not None]
    return max(present) if present else None
