"""The Alembic migrations build exactly the schema the models declare, on SQLite and on PostgreSQL.

Alembic's autogenerate comparison (`compare_metadata`) of a freshly migrated store against
`db_utils.models.Base.metadata` must find nothing: no missing or extra table, column, index, unique or
foreign key, no other type or nullability. A model changed without its migration fails here.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from db_utils import migrate
from db_utils.models import Base


def _differences(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return [d for d in compare_metadata(context, Base.metadata) if not _is_alembic_own(d)]


def _is_alembic_own(diff) -> bool:
    """alembic_version is Alembic's bookkeeping table, not a model."""
    return diff[0] == "remove_table" and diff[1].name == "alembic_version"


def test_migrations_produce_exactly_the_models_schema(store_engine):
    assert _differences(store_engine) == []
    assert set(inspect(store_engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}


def test_the_comparison_sees_a_model_the_migrations_lack(tmp_path):
    """The check can fail: a store built at the first revision lacks 0002's movies.keywords."""
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade_engine(engine, "0001")
    try:
        diffs = _differences(engine)
    finally:
        engine.dispose()
    assert [(d[0], d[2], d[3].name) for d in diffs if d[0] == "add_column"] == [("add_column", "movies", "keywords")]


def test_an_in_memory_store_is_migrated_on_its_own_connection():
    engine = create_engine("sqlite://")
    migrate.upgrade_engine(engine)
    assert _differences(engine) == []
