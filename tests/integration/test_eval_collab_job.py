"""`python -m embeddings collab` on a hand-built store into an embedded ChromaDB."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from db_utils import migrate, queries
from db_utils.engine import create
from embeddings.__main__ import main
from embeddings.collab_job import collab_settings
from embeddings.config import EmbeddingSettings
from embeddings.store import VectorStore

pytestmark = pytest.mark.integration
T = datetime(2026, 1, 1)


def test_collab_job_builds_movies_cf_and_drops_movies_that_lost_their_viewers(tmp_path, monkeypatch, capsys) -> None:
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    engine = create(url)
    groups = {"abc": (1, 2, 3), "xyz": (4, 5, 6)}
    with engine.begin() as conn:
        queries.upsert_watches(conn, [{"user_id": u, "movie_id": m, "minute": 1, "ts": T}
                                      for movies, users in groups.items() for u in users for m in movies])
        queries.upsert_ratings(conn, [{"user_id": 7, "movie_id": "q", "rating": 5, "ts": T},
                                      {"user_id": 8, "movie_id": "q", "rating": 4, "ts": T}])
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.setenv("COLLAB_DIM", "3")
    assert main(["collab", "--database-url", url]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["movies"] == 7 and summary["users"] == 8 and summary["deleted"] == 0
    store = VectorStore(collab_settings(EmbeddingSettings.from_env()))
    assert store.count() == 7 and store.version == summary["version"]
    assert sorted(m for m, _ in store.neighbours(["a"], 2)["a"]) == ["b", "c"]  # co-watched, not x, y, z, q
    store.close()

    with engine.begin() as conn:  # q loses a viewer: a single viewer gets no collaborative vector
        conn.exec_driver_sql("DELETE FROM ratings WHERE user_id = 8")
    assert main(["collab", "--database-url", url]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["movies"] == 6 and again["deleted"] == 1 and again["version"] != summary["version"]
    engine.dispose()


def test_collab_job_on_a_store_without_schema_fails_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "chroma"))
    assert main(["collab", "--database-url", f"sqlite:///{tmp_path}/empty.db"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `python -m db_utils migrate`" in err
