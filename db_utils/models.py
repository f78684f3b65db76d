"""The SQL store's tables as SQLAlchemy 2.0 typed models.

Foreign keys point from events to ``users`` and ``movies``; the upserts in ``db_utils.queries`` register
unknown users and movies in the same transaction, so the order in which the stream arrives never matters.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MOVIE_ID_LENGTH = 255
RAW_LINE_CAP = 1024


class Base(DeclarativeBase):
    """Declarative base of every table of the store."""


class Movie(Base):
    """A catalog entry. A movie first seen in the stream has only its id: title and content_hash are NULL
    until a catalog or the movie API fills them; the embedding job embeds rows whose content_hash differs
    from embedded_hash."""

    __tablename__ = "movies"

    id: Mapped[str] = mapped_column(String(MOVIE_ID_LENGTH), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(512))
    year: Mapped[int | None] = mapped_column(Integer)
    genres: Mapped[str | None] = mapped_column(String(512))
    overview: Mapped[str | None] = mapped_column(Text)
    tagline: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[str | None] = mapped_column(Text)  # '|'-separated, from the movie API; part of the text
    popularity: Mapped[float | None] = mapped_column(Float)
    vote_average: Mapped[float | None] = mapped_column(Float)
    vote_count: Mapped[int | None] = mapped_column(Integer)
    runtime: Mapped[int | None] = mapped_column(Integer)
    original_language: Mapped[str | None] = mapped_column(String(16))
    release_date: Mapped[date | None] = mapped_column(Date)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    embedded_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)


class User(Base):
    """A user of the streaming site; demographics come from the simulator's user API when known."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    age: Mapped[int | None] = mapped_column(Integer)
    occupation: Mapped[str | None] = mapped_column(String(64))
    gender: Mapped[str | None] = mapped_column(String(8))
    first_seen: Mapped[datetime | None] = mapped_column(DateTime)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime)


class Watched(Base):
    """One row per user and movie watched: the furthest minute reached and the first and last minute's time."""

    __tablename__ = "watched"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    movie_id: Mapped[str] = mapped_column(ForeignKey("movies.id"), primary_key=True)
    max_minute: Mapped[int] = mapped_column(Integer)
    first_ts: Mapped[datetime] = mapped_column(DateTime)
    last_ts: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        CheckConstraint("max_minute BETWEEN 0 AND 10000", name="ck_watched_minute_range"),
        CheckConstraint("first_ts <= last_ts", name="ck_watched_first_before_last"),
        Index("ix_watched_user_last_ts", "user_id", "last_ts"),
        Index("ix_watched_movie_last_ts", "movie_id", "last_ts"),
    )


class Rating(Base):
    """A user's rating of a movie; the latest rating wins (ties broken by the higher rating)."""

    __tablename__ = "ratings"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    movie_id: Mapped[str] = mapped_column(ForeignKey("movies.id"), primary_key=True)
    rating: Mapped[int] = mapped_column(SmallInteger)
    ts: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="ck_ratings_rating_range"),
        Index("ix_ratings_user_ts", "user_id", "ts"),
    )


class RecommendationServed(Base):
    """A recommendation list the simulator logged as served; one per user and time."""

    __tablename__ = "recommendations_served"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    server: Mapped[str] = mapped_column(String(255))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    movie_ids: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("status BETWEEN 0 AND 999", name="ck_served_status_range"),
        CheckConstraint("latency_ms >= 0", name="ck_served_latency_nonnegative"),
        Index("ix_served_ts", "ts"),
    )


class RejectedLine(Base):
    """A log line the parser refused, with its reason and where it came from (raw text capped)."""

    __tablename__ = "rejected_lines"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    source: Mapped[str] = mapped_column(String(255))
    # "offset" is reserved in several SQL dialects, hence the column name.
    offset: Mapped[int | None] = mapped_column("source_offset", BigInteger)
    raw: Mapped[str] = mapped_column(String(RAW_LINE_CAP))
    reason: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_rejected_reason_ts", "reason", "ts"),)


VERSION_STATUSES = ("candidate", "active", "retired", "rejected", "failed")


class ModelVersion(Base):
    """One immutable model version of the training role: what it serves (its collaborative collection,
    the content collection it shares, the ranking config), what it was trained on (the store watermark),
    what built it (code revision, encoder fingerprint), how the gate scored it, and its status.

    At most one row is `active` (a partial unique index); the service serves that one. JSON columns are
    plain text so SQLite, PostgreSQL and SQL Server store them alike."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime)
    content_collection: Mapped[str] = mapped_column(String(128))
    collab_collection: Mapped[str | None] = mapped_column(String(128))
    rank_config: Mapped[str] = mapped_column(Text)
    collab_config: Mapped[str] = mapped_column(Text)
    watermark: Mapped[str | None] = mapped_column(Text)
    code_revision: Mapped[str] = mapped_column(String(64))
    model_fingerprint: Mapped[str] = mapped_column(String(80))
    metrics: Mapped[str | None] = mapped_column(Text)
    collections_dropped: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        CheckConstraint("status IN ('candidate', 'active', 'retired', 'rejected', 'failed')",
                        name="ck_model_versions_status"),
        Index("uq_model_versions_one_active", "status", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'"),
              mssql_where=text("status = 'active'")),
    )


class ModelEvent(Base):
    """The history of activations (promote, rollback): which version became active when, and why. The
    provenance of an answer given at a time is the activation in force then."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    event: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_model_events_at", "at"),)


EXPERIMENT_STATUSES = ("running", "stopped")


class Experiment(Base):
    """An online experiment between model versions: a control (the version active when it started) and
    treatment arms with traffic shares, `arms` as JSON text [{"arm", "version_id", "share"}]. A canary adds
    its rule (min_users, max_days). At most one row is `running` (a partial unique index); the service
    polls that one. `decision` (promoted, aborted, stopped) and `reason` say how it ended."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    control_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    arms: Mapped[str] = mapped_column(Text)
    is_canary: Mapped[bool] = mapped_column(Boolean, default=False)
    min_users: Mapped[int | None] = mapped_column(Integer)
    max_days: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)
    decision: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("status IN ('running', 'stopped')", name="ck_experiments_status"),
        Index("uq_experiments_one_running", "status", unique=True,
              sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'"),
              mssql_where=text("status = 'running'")),
    )


# Typed table handles: SQLAlchemy types `Model.__table__` as a FromClause, though a declarative model's is
# always a Table; declared once here so every query module sees `.insert()`, `.name` and `.c[...]` typed.
MOVIES_TABLE: Table = Movie.__table__  # type: ignore[assignment]
USERS_TABLE: Table = User.__table__  # type: ignore[assignment]
WATCHED_TABLE: Table = Watched.__table__  # type: ignore[assignment]
RATINGS_TABLE: Table = Rating.__table__  # type: ignore[assignment]
SERVED_TABLE: Table = RecommendationServed.__table__  # type: ignore[assignment]
REJECTED_TABLE: Table = RejectedLine.__table__  # type: ignore[assignment]
VERSIONS_TABLE: Table = ModelVersion.__table__  # type: ignore[assignment]
EVENTS_TABLE: Table = ModelEvent.__table__  # type: ignore[assignment]
EXPERIMENTS_TABLE: Table = Experiment.__table__  # type: ignore[assignment]
