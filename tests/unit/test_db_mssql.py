"""SQL Server (Azure SQL) statements, checked by compiling them: no SQL Server runs here."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateTable

from db_utils import queries
from db_utils.models import Base


def test_every_table_compiles_for_sql_server() -> None:
    for table in Base.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=mssql.dialect()))
        assert f"CREATE TABLE {table.name}" in ddl


def test_watch_merge_keeps_max_minute_and_time_range() -> None:
    sql = queries.merge_statement_mssql(queries.WATCHED, ["user_id", "movie_id", "max_minute", "first_ts", "last_ts"])
    assert sql.startswith("MERGE INTO [watched] WITH (HOLDLOCK) AS t USING (VALUES (:user_id, :movie_id,")
    assert "ON t.[user_id] = s.[user_id] AND t.[movie_id] = s.[movie_id]" in sql
    assert "t.[max_minute] = GREATEST(COALESCE(t.[max_minute], s.[max_minute])" in sql
    assert "t.[first_ts] = LEAST(" in sql
    assert sql.endswith("WHEN NOT MATCHED THEN INSERT ([user_id], [movie_id], [max_minute], [first_ts], [last_ts])"
                        " VALUES (s.[user_id], s.[movie_id], s.[max_minute], s.[first_ts], s.[last_ts]);")
    # every parameter is bound, nothing interpolated
    assert set(re.findall(r":(\w+)", sql)) == {"user_id", "movie_id", "max_minute", "first_ts", "last_ts"}


def test_rating_merge_only_replaces_with_a_newer_rating() -> None:
    sql = queries.merge_statement_mssql(queries.RATINGS, ["user_id", "movie_id", "rating", "ts"])
    assert "WHEN MATCHED AND (s.[ts] > t.[ts] OR (s.[ts] = t.[ts] AND s.[rating] > t.[rating]))" in sql


def test_served_merge_keeps_the_first_list() -> None:
    sql = queries.merge_statement_mssql(
        queries.SERVED, ["user_id", "ts", "server", "status", "latency_ms", "movie_ids"])
    assert "WHEN MATCHED" not in sql and "WHEN NOT MATCHED THEN INSERT" in sql


def test_history_query_compiles_with_top_for_sql_server() -> None:
    from db_utils.models import Watched

    stmt = select(Watched.__table__.c.movie_id).limit(5)
    assert "TOP" in str(stmt.compile(dialect=mssql.dialect()))


def test_the_request_history_statement_compiles_for_sql_server() -> None:
    """The request path's one statement: TOP-style limits written into the text (no value needed at
    execution), the ids aggregated with STRING_AGG over NVARCHAR(MAX), only the user id bound."""
    compiled = queries.recent_and_seen_statement(50, 30_000, True).compile(dialect=mssql.pyodbc.dialect())
    sql = str(compiled)  # the form `recent_and_seen_dbapi` runs on servers: primary-key lookups per row
    assert "STRING_AGG(CAST(" in sql and "AS NVARCHAR(MAX)), ','" in sql
    assert "POSTCOMPILE" not in sql and "LIMIT" not in sql
    assert "mssql_rn <= 50" in sql and "mssql_rn <= 30000" in sql
    assert set(compiled.construct_params({"user_id": 3}).values()) == {3}


def test_aggregate_folds_a_batch_with_the_same_rules_as_sql() -> None:
    rows = [{"user_id": 1, "movie_id": "a", "max_minute": 5, "first_ts": 3, "last_ts": 3},
            {"user_id": 1, "movie_id": "a", "max_minute": 2, "first_ts": 1, "last_ts": 1}]
    assert queries.aggregate(queries.WATCHED, rows) == [
        {"user_id": 1, "movie_id": "a", "max_minute": 5, "first_ts": 1, "last_ts": 3}]
    ratings = [{"user_id": 1, "movie_id": "a", "rating": 2, "ts": 5}, {"user_id": 1, "movie_id": "a", "rating": 4,
                                                                      "ts": 5}]
    assert queries.aggregate(queries.RATINGS, ratings)[0]["rating"] == 4
