"""The embeddings job's queries on SQLite and PostgreSQL: what needs a vector, and marking it done."""

from __future__ import annotations

from sqlalchemy import Engine

from db_utils import queries


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        queries.upsert_movies(conn, [
            {"id": "heat+1995", "title": "Heat", "year": 1995, "genres": "Action", "content_hash": "h1"},
            {"id": "alien+1979", "title": "Alien", "year": 1979, "genres": "Horror", "content_hash": "a1"},
        ])
        queries.ensure_movies(conn, ["toy+story+1995"])  # registered by the parser: no title, no hash


def test_new_and_untitled_movies_need_embedding(store_engine: Engine) -> None:
    _seed(store_engine)
    with store_engine.connect() as conn:
        rows = queries.movies_to_embed(conn)
        assert [r["id"] for r in rows] == ["alien+1979", "heat+1995", "toy+story+1995"]
        assert rows[1] == {"id": "heat+1995", "title": "Heat", "year": 1995, "genres": "Action", "overview": None,
                           "tagline": None, "keywords": None, "popularity": None, "content_hash": "h1"}
        assert queries.untitled_movie_ids(conn) == ["toy+story+1995"]


def test_marked_movies_are_done_until_their_content_changes(store_engine: Engine) -> None:
    _seed(store_engine)
    with store_engine.begin() as conn:
        assert queries.mark_embedded(conn, [("heat+1995", "h1"), ("alien+1979", "a1"),
                                            ("toy+story+1995", "slug")]) == 3
    with store_engine.connect() as conn:
        assert queries.movies_to_embed(conn) == []
        assert queries.movie_embedded_hashes(conn) == {"heat+1995": "h1", "alien+1979": "a1",
                                                       "toy+story+1995": "slug"}
    with store_engine.begin() as conn:
        queries.upsert_movies(conn, [{"id": "heat+1995", "title": "Heat", "overview": "new", "content_hash": "h2"}])
        queries.upsert_movies(conn, [{"id": "toy+story+1995", "title": "Toy Story", "content_hash": "t1"}])
        queries.mark_embedded(conn, [("alien+1979", None)])  # its vector was lost
    with store_engine.connect() as conn:
        assert [r["id"] for r in queries.movies_to_embed(conn)] == ["alien+1979", "heat+1995", "toy+story+1995"]
        assert queries.untitled_movie_ids(conn) == []
    with store_engine.begin() as conn:
        assert queries.mark_embedded(conn, []) == 0
