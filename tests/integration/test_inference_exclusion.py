"""No user is recommended a movie they watched or rated, however long their history, on SQLite and on
PostgreSQL: the service reads the whole history in its one round trip and ranks the newest part."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from db_utils import queries
from inference.app import create_app
from inference.config import ServiceSettings
from inference.sources import SqlHistorySource
from tests.fixtures.inference import FakeVectors

pytestmark = pytest.mark.integration
START = datetime(2024, 1, 1)


def test_a_600_movie_history_never_comes_back(store_engine: Engine, tmp_path) -> None:
    movies = [f"movie+{i}+2000" for i in range(700)]
    with store_engine.begin() as conn:
        # user 1 watched movies 0..599, one a minute (599 is the most recent) and rated 200 of them;
        # user 2 only rated 550 movies
        queries.upsert_watches(conn, [{"user_id": 1, "movie_id": movies[i], "minute": 5,
                                       "ts": START + timedelta(minutes=i)} for i in range(600)])
        queries.upsert_ratings(conn, [{"user_id": 1, "movie_id": movies[i], "rating": 5,
                                       "ts": START + timedelta(minutes=i, seconds=30)} for i in range(0, 600, 3)])
        queries.upsert_ratings(conn, [{"user_id": 2, "movie_id": movies[i], "rating": 4,
                                       "ts": START + timedelta(minutes=i)} for i in range(550)])
        # everyone else watched the first 60 movies: they are the popular list
        queries.upsert_watches(conn, [{"user_id": u, "movie_id": movies[i], "minute": 5, "ts": START}
                                      for u in range(10, 40) for i in range(60)])
    # every recent movie's nearest neighbours are old watches, plus one unseen movie each
    lists = {movies[i]: [(movies[i - 300], 0.99), (movies[i - 500], 0.98), (movies[600 + i % 100], 0.5)]
             for i in range(500, 600)}
    lists.update({movies[i]: [(movies[i - 200], 0.99), (movies[600 + i % 100], 0.4)] for i in range(300, 550)})
    settings = ServiceSettings(popular_snapshot="", warm_neighbours=0, provenance_log="")
    url = store_engine.url.render_as_string(hide_password=False)
    app = create_app({"SETTINGS": settings, "HISTORY_SOURCE": SqlHistorySource(url),
                      "VECTORS_FACTORY": lambda: FakeVectors(lists=lists)})
    client = app.test_client()
    for user, seen in ((1, set(movies[:600])), (2, set(movies[:550]))):
        ids = client.get(f"/recommend/{user}").get_data(as_text=True).split(",")
        assert len(ids) == 20
        assert not set(ids) & seen, f"user {user} was recommended watched movies"
        assert all(m in set(movies[600:]) for m in ids[:10])  # the unseen neighbours rank first
        batch = client.post("/recommend", json={"user_ids": [user]}).get_json()[str(user)]
        assert not set(batch) & seen
